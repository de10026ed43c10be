"""A Ctrl-C during an update is held until every replica has applied it (npegg.parallel.engine)."""
import os
import signal

import pytest

from npegg.parallel.engine import _sigint_held


def test_ctrl_c_inside_the_update_is_delivered_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with _sigint_held():
            os.kill(os.getpid(), signal.SIGINT)          # arrives mid-block
            done.append("update finished")              # the block still runs to its end
    assert done == ["update finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_ctrl_c_no_interrupt():
    with _sigint_held():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
