"""``python -m npegg`` and the ``npegg`` command: ``npegg.program.cli.main``.

A stop signal (Ctrl-C, SIGTERM, SIGHUP) while the program is still importing NumPy ends it with
the shell's status for that signal and no traceback; from ``main`` on, ``npegg.program.stopping``
handles them.
"""
import signal
import sys


def _quit(signum, frame):
    sys.exit(128 + signum)


def entry() -> int:
    """The console script: quiet stop signals during the imports, then ``main``."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        s = getattr(signal, name, None)
        if s is not None and signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, _quit)
    from .program.cli import main
    return main()


if __name__ == "__main__":
    sys.exit(entry())
