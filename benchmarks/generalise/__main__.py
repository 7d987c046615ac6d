"""`python -m benchmarks.generalise [--quick]`: the same run as `python benchmarks/generalise.py`."""

import sys

from .cli import main

sys.exit(main())
