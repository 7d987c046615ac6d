"""Leave-kinds-out benchmark: `python benchmarks/generalise.py [--quick]` (`--help` gives the protocol).

The code is the package `benchmarks/generalise/` beside this file (images, features, heads, folds, report, cli);
`python -m benchmarks.generalise` runs the same. Run as a script, this folder is first on sys.path and the package
`generalise` is found before this file (a package wins over a module of the same name).
"""

import sys

from generalise.cli import main

if __name__ == "__main__":
    sys.exit(main())
