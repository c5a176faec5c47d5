"""`python -m pypbx` runs the same CLI as the `pypbx` script."""

import sys

from pypbx.cli import main

sys.exit(main())
