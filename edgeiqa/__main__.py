import sys

from edgeiqa.cli.main import main

sys.exit(main())
