"""``python -m atso`` runs the command line."""

import sys

from atso.cli import main

if __name__ == "__main__":  # not when a worker process (multiprocessing's spawn) imports this module
    sys.exit(main())
