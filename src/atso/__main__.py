"""``python -m atso`` runs the command line."""

import sys

from atso.cli import main

sys.exit(main())
