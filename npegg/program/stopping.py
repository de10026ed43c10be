"""How an ``npegg`` command stops: Ctrl-C, SIGTERM and SIGHUP all raise ``Stopped``; a save is never cut.

    signal     sent by                                              exit status
    SIGINT     Ctrl-C                                               130 = 128 + 2
    SIGTERM    kill, timeout, systemd, Slurm, docker stop           143 = 128 + 15
    SIGHUP     a closed terminal or dropped ssh session             129 = 128 + 1

``stop_signals()`` turns the first of them into ``Stopped`` (a ``KeyboardInterrupt``, so every
``except KeyboardInterrupt`` and every ``atomic_write`` clean-up treats all three alike); every
later one is swallowed, so the save that the first one asked for runs to its end and a second
Ctrl-C 0.1 s later cannot abort it. A signal the parent set to be ignored (``nohup`` ignores
SIGHUP, a shell's background job ignores SIGINT) stays ignored. ``npegg.parallel.signals_held``
holds them while a save or an update is in flight and delivers them after.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from ..parallel import STOP_SIGNALS, signals_held  # noqa: F401 (re-exported for the program)


class Stopped(KeyboardInterrupt):
    """The first stop signal of a command; ``signum`` is the signal (SIGINT for a Ctrl-C)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def signal_of(exc: BaseException) -> int:
    """The signal behind an interrupt: ``Stopped.signum``, or SIGINT for a plain KeyboardInterrupt."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_status(exc: BaseException) -> int:
    """128 + the signal's number, as a shell reports a process ended by that signal."""
    return 128 + signal_of(exc)


def stopped_by(exc: BaseException) -> str:
    """'interrupted' for Ctrl-C, 'stopped by SIGTERM' for the others."""
    signum = signal_of(exc)
    return "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"


class _StopHandler:
    """The handler of every stop signal: raise ``Stopped`` the first time, swallow the rest."""

    def __init__(self):
        self.first = None

    def __call__(self, signum, frame):
        if self.first is None:
            self.first = signum
            raise Stopped(signum)

    def stopping(self) -> None:
        """An interrupt is being handled (whatever raised it): swallow every later stop signal."""
        if self.first is None:
            self.first = signal.SIGINT


_active: list = []                                      # the handler of the command running, if any


def stopping() -> None:
    """An interrupt is being handled: from now on every stop signal is swallowed (see the module)."""
    if _active:
        _active[-1].stopping()


@contextmanager
def stop_signals():
    """Inside the block, SIGINT, SIGTERM and SIGHUP raise ``Stopped`` once (see the module); yields
    the handler, whose ``stopping()`` a caller handling an interrupt calls. Restored on exit.
    Only the main thread can set handlers; elsewhere nothing changes."""
    handler = _StopHandler()
    if threading.current_thread() is not threading.main_thread():
        yield handler
        return
    previous = {}
    for s in STOP_SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:     # nohup, background jobs: their choice stands
            previous[s] = signal.signal(s, handler)
    _active.append(handler)
    try:
        yield handler
    finally:
        _active.remove(handler)
        for s, old in previous.items():
            signal.signal(s, old)
