"""``python -m npegg``: the same command as ``npegg`` (``npegg.cli``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
