"""npegg computing in float64, as an adapter: the check that the kit's float tolerances hold.

Every float operation is run by npegg on the case's inputs cast to float64, so its outputs are
the exact results to ~1e-16; npegg's float32 answer (the kit's oracle) must lie within the
one-implementation bound of ``npegg.conformance.tolerance``, that is within *half* the tolerance,
which tests/conformance/test_kit.py asserts. The scoreboard shows the measured worst
error ÷ tolerance of this row beside each float operation. (``bytelm_forward``'s tolerance is
itself defined by a float64 replay, so it is not claimed here.)
"""
import numpy as np

from npegg.conformance.npegg_adapter import ADAPTER as NPEGG
from npegg.conformance.protocol import OPERATIONS


def _widen(v):
    return v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype == np.float32 else v


class NpeggFloat64:
    name = "npegg in float64"
    about = "npegg's own functions on float64 inputs: the exact answer, against which the bounds are checked"
    claims = frozenset(op for op, spec in OPERATIONS.items()
                       if not spec.exact and spec.level != 2 and op not in ("bytelm_forward", "fitness_pair_sign"))

    def run(self, op, case):
        return NPEGG.run(op, {k: _widen(v) for k, v in case.items()})


ADAPTER = NpeggFloat64()
