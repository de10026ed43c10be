"""Ctrl-C, SIGTERM and SIGHUP during an update are held until every replica has applied it
(npegg.parallel.engine.signals_held)."""
import os
import signal

import pytest

from npegg.parallel.engine import signals_held


def test_ctrl_c_inside_the_update_is_delivered_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)          # arrives mid-block
            done.append("update finished")              # the block still runs to its end
    assert done == ["update finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_and_sighup_are_held_and_delivered_in_order_to_their_handlers():
    seen, done = [], []

    def handler(signum, frame):
        seen.append(signum)
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGHUP)
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("update finished")
            assert seen == []                            # nothing delivered inside the block
        assert done == ["update finished"] and seen == [signal.SIGHUP, signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def test_an_ignored_signal_stays_ignored():
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)                 # as under nohup
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


def test_no_signal_no_interrupt():
    with signals_held():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
