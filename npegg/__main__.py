"""``python -m npegg`` and the ``npegg`` command: ``npegg.program.cli.main``.

A stop signal (Ctrl-C, SIGTERM, SIGHUP) while the program is still importing is noted and ends it,
once the imports are done, with the shell's status for that signal and no traceback (raising in
the middle of NumPy's C-level import would turn into an ImportError); from ``main`` on,
``npegg.program.stopping`` handles them; once ``main`` has returned they are ignored.
"""
import signal
import sys

_noted: list = []


def _note(signum, frame):
    _noted.append(signum)


def _quit(signum, frame):
    sys.exit(128 + signum)


def entry() -> int:
    """The console script: stop signals noted during the imports, then ``main``, then none at all
    while the interpreter shuts down (it resets Python handlers to the default, which would let a
    late Ctrl-C of a burst kill the finished process instead of letting it exit with its status)."""
    stops = [s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None
             and signal.getsignal(s) is not signal.SIG_IGN]
    for s in stops:
        signal.signal(s, _note)
    from .program.cli import main
    for s in stops:
        signal.signal(s, _quit)
    if _noted:
        return 128 + _noted[0]
    status = main()
    for s in stops:
        signal.signal(s, signal.SIG_IGN)
    return status


if __name__ == "__main__":
    sys.exit(entry())
