"""The official JAX code (HyperscaleES, nano-egg) through the conformance kit, levels (i)–(iii).

Each operation the reference has is a test: hypothesis cases (``NPEGG_CONFORMANCE_EXAMPLES`` per
operation, 4 by default — CI's budget; the scoreboard's release run uses 50), npegg's answer
against the reference's, exact for int8 and noise derivation, within the derived tolerance for
float. The scoreboard's statuses must still hold (docs/conformance.json): every claimed
operation passes, and the exact operations (int8, noise derivation) are bit for bit. Whether a
float case comes out bit-identical depends on XLA's CPU code (fused multiply-adds), so the float
rows are held to the tolerance, not to their exact-case counts.

The reference's sources are not part of npegg: they are read from ``../shared/reference-impl``
(or ``NPEGG_REFERENCE_IMPL``), with jax and optax from the ``reference`` extra. Where either is
missing, these tests are skipped and say which; ``NPEGG_REQUIRE_REFERENCE=1`` (set by .ci/run)
turns that into a failure.
"""
import json
import os
import sys
from pathlib import Path

import pytest

from npegg.conformance import runner
from npegg.conformance.protocol import DIFFERS, EXACT, OPERATIONS, WITHIN

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "adapters"))
import jax_reference  # noqa: E402  (the adapter module; importing it needs no jax)

EXAMPLES = int(os.environ.get("NPEGG_CONFORMANCE_EXAMPLES", "4"))
SCOREBOARD = HERE.parent.parent / "docs" / "conformance.json"
pytestmark = pytest.mark.reference


@pytest.fixture(scope="module")
def reference():
    reason = jax_reference.missing()
    if reason:
        if os.environ.get("NPEGG_REQUIRE_REFERENCE") == "1":
            pytest.fail(f"NPEGG_REQUIRE_REFERENCE=1 but {reason}")
        pytest.skip(reason)
    return jax_reference.ADAPTER


def _committed():
    rows = json.loads(SCOREBOARD.read_text())
    return next(r for r in rows if r["adapter"] == jax_reference.ADAPTER.name)["operations"]


@pytest.mark.parametrize("op", sorted(jax_reference.JaxReference.claims, key=list(OPERATIONS).index))
def test_reference_agrees_with_npegg(reference, op, tmp_path):
    res = runner.check_op(reference, op, max_examples=EXAMPLES, failures=tmp_path,
                          backend="tests/conformance/adapters/jax_reference.py:ADAPTER")
    assert res.status != DIFFERS, f"{op}: {res.message}\nminimal case: {res.extra.get('minimal')}\n{res.replay}"
    committed = _committed()[op]["status"]
    assert committed in (EXACT, WITHIN), f"{op}: the scoreboard says {committed}; update it ({committed!r})"
    if OPERATIONS[op].exact:             # int8 and noise derivation: bit for bit, on any machine
        assert res.status == EXACT, f"{op}: {res.status}: {res.message}"
    assert res.cases == EXAMPLES


def test_the_reference_claims_what_the_scoreboard_says():
    """Claims are the adapter's, not the run's: this holds without jax."""
    committed = {op for op, r in _committed().items() if r["status"] != "not claimed"}
    assert committed == set(jax_reference.JaxReference.claims)
