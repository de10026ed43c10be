"""``python -m npegg`` and the ``npegg`` command: ``npegg.program.cli.main``.

A stop signal (Ctrl-C, SIGTERM, SIGHUP) while the program is still importing NumPy ends it with
the shell's status for that signal and no traceback; from ``main`` on, ``npegg.program.stopping``
handles them; once ``main`` has returned they are ignored.
"""
import signal
import sys


def _quit(signum, frame):
    sys.exit(128 + signum)


def entry() -> int:
    """The console script: quiet stop signals during the imports, then ``main``, then none at all
    while the interpreter shuts down (it resets Python handlers to the default, which would let a
    late Ctrl-C of a burst kill the finished process instead of letting it exit with its status)."""
    stops = [s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None]
    for s in stops:
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, _quit)
    from .program.cli import main
    status = main()
    for s in stops:
        signal.signal(s, signal.SIG_IGN)
    return status


if __name__ == "__main__":
    sys.exit(entry())
