"""``python -m npegg``: the same command as ``npegg`` (``npegg.program.cli``)."""
import sys

from .program.cli import main

if __name__ == "__main__":
    sys.exit(main())
