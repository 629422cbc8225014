"""``python -m compressbench``: the ``compressbench`` command, for environments whose scripts
folder is not on PATH."""
import sys

from compressbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
