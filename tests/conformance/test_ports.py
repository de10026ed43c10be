"""The PyTorch ports on the registry (torcheggroll 0.2.0, eggroll-trainer 0.1.0, eggroll-es 0.2.0)
checked against npegg: level (i) with injected noise through the kit's runner, the differences each
pinned to a minimal case, and statistical conformance on the regression problem with their own RNG.

They need torch and the ports (the ``ports`` extra, eggroll-trainer needs Python ≥ 3.12), which
``.ci/run`` installs into a venv of its own and runs this file in (NPEGG_PORTS=1 there, so a
missing port is an error, not a skip); in the other venvs the module is skipped.
"""
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("NPEGG_PORTS") == "1":
    import torch
else:
    torch = pytest.importorskip("torch", reason="the PyTorch ports run in .ci/run's ports venv (NPEGG_PORTS=1)")

from hypothesis import HealthCheck, given, settings

from npegg.conformance import cases, runner
from npegg.conformance import stats as S
from npegg.conformance.protocol import DIFFERS, EXACT, WITHIN

sys.path.insert(0, str(Path(__file__).parent / "adapters"))
torch.set_num_threads(1)        # tiny tensors: threads only add overhead on a 2-core machine

import torch_eggroll_es as EES        # noqa: E402
import torch_eggroll_trainer as ETR   # noqa: E402
import torch_regression as REG        # noqa: E402
import torch_torcheggroll as TEG      # noqa: E402

EXAMPLES = 25      # cases per operation and domain (a release run would use the kit's default, 50)


def _rank_above_side(case):
    """R > the matrix's smaller side (do_mm, do_emb: A (P, a, R), B (P, b, R); mlp_forward: any layer)."""
    pairs = [(case[k], case["B" + k[1:]]) for k in case if k.startswith("A")]
    return any(a.shape[-1] > min(a.shape[-2], b.shape[-2]) for a, b in pairs)


def _unpaired(case):
    m = np.asarray(case["members"])
    return not (m.size % 2 == 0 and np.array_equal(m, np.arange(m.size)))


def _pop_of(case):
    return len(case["raw"]) if "raw" in case else len(case["members"])


# (adapter, op) → (why it may differ, the predicate every minimal failing case must satisfy).
# Anything else that fails is a new difference: the test fails.
KNOWN = {
    (TEG.ADAPTER, "do_mm"): ("rank clamped to min(O, I)", _rank_above_side),
    (TEG.ADAPTER, "do_emb"): ("rank clamped to min(V, D)", _rank_above_side),
    (TEG.ADAPTER, "mlp_forward"): ("rank clamped per layer", _rank_above_side),
    (TEG.ADAPTER, "noisy_standard"): None,
    (TEG.ADAPTER, "fitness_zscore"): ("unbiased std, no 1e-5, no groups", lambda c: True),
    (TEG.ADAPTER, "grad_lowrank"): ("the update centres f (only complete pairs cancel it); the rank is clamped",
                                    lambda c: _unpaired(c) or _rank_above_side(c)),
    (TEG.ADAPTER, "grad_full"): ("the update centres f; only complete pairs cancel it", _unpaired),
    (ETR.ADAPTER, "do_mm"): None,
    (ETR.ADAPTER, "noisy_standard"): None,
    (ETR.ADAPTER, "grad_lowrank"): None,
    (ETR.ADAPTER, "grad_full"): None,
    (ETR.ADAPTER, "fitness_zscore"): ("unbiased std + 1e-8, per-group std", lambda c: True),
    (ETR.ADAPTER, "mlp_forward"): ("one noise stream for every parameter of a member", lambda c: len(c) > 0),
    (EES.ADAPTER, "grad_lowrank"): None,
    (EES.ADAPTER, "grad_full"): None,
    (EES.ADAPTER, "fitness_zscore"): ("unbiased std + 1e-8, no groups", lambda c: True),
    (EES.ADAPTER, "fitness_centered_ranks"): ("ranks by argsort: ties not shared; P = 1 divides by 0",
                                              lambda c: _pop_of(c) == 1 or len(np.unique(c["raw"])) < len(c["raw"])),
}


def test_every_claimed_operation_has_an_expectation():
    for adapter in (TEG.ADAPTER, ETR.ADAPTER, EES.ADAPTER):
        assert {op for (a, op) in KNOWN if a is adapter} == set(adapter.claims), adapter.name


@pytest.fixture(scope="module")
def level1(tmp_path_factory):
    """The kit's runner over every claimed operation of every port: {port: {op: OpResult}}."""
    out = {}
    for adapter in (TEG.ADAPTER, ETR.ADAPTER, EES.ADAPTER):
        failures = tmp_path_factory.mktemp(adapter.name)
        results = runner.check_adapter(adapter, ops=sorted(adapter.claims), max_examples=EXAMPLES, seed=0,
                                       failures=failures)
        out[adapter.name] = {r.op: r for r in results}
    return out


@pytest.mark.parametrize("adapter, op", list(KNOWN), ids=[f"{a.name}-{op}" for a, op in KNOWN])
def test_level1_through_the_kit(level1, adapter, op):
    """The kit's hypothesis cases: either every case agrees, or the minimal failing case is one the
    port's documented convention explains (KNOWN), with a replay file saved."""
    res = level1[adapter.name][op]
    expected = KNOWN[(adapter, op)]
    if expected is None:
        assert res.status in (EXACT, WITHIN), (res.message, res.extra)
        assert res.cases == EXAMPLES
        return
    assert res.status == DIFFERS, f"{adapter.name} {op}: expected a known difference ({expected[0]}), got {res.status}"
    _, case = runner.load_case(res.minimal_case)
    assert expected[1](case), f"{adapter.name} {op}: the minimal case is not explained by {expected[0]!r}: {res.message}"


@pytest.mark.parametrize("adapter", [TEG.ADAPTER, ETR.ADAPTER, EES.ADAPTER], ids=lambda a: a.name)
def test_the_scoreboard_rows_are_current(level1, adapter):
    """tests/conformance/reports/<port>.json (the scoreboard's rows, written by torch_reports.py) says
    what a fresh run says: the same status and case counts for every operation, and a verdict on
    every difference."""
    import json
    report = json.loads((Path(__file__).parent / "reports" / f"{adapter.name}.json").read_text())
    for op, res in level1[adapter.name].items():
        row = report["operations"][op]
        assert (row["status"], row["cases"], row["exact"], row["within"]) == (res.status, res.cases, res.exact, res.within), op
        if res.status == DIFFERS:
            assert row.get("verdict"), f"{adapter.name} {op}: no verdict recorded in the report"
    assert report["operations"]["es_step"]["message"].startswith(f"{adapter.name}: epochs to MSE 300")


# The same operations inside each port's own domain (its conventions mapped): they must agree.
DOMAINS = [
    (TEG.ADAPTER, "do_mm", lambda c: not _rank_above_side(c)),
    (TEG.ADAPTER, "do_emb", lambda c: not _rank_above_side(c)),
    (TEG.ADAPTER, "mlp_forward", lambda c: not _rank_above_side(c)),
    (TEG.ADAPTER, "grad_lowrank", lambda c: not _unpaired(c) and not _rank_above_side(c)),
    (TEG.ADAPTER, "grad_full", lambda c: not _unpaired(c)),
]


@pytest.mark.parametrize("adapter, op, inside", DOMAINS, ids=[f"{a.name}-{op}" for a, op, _ in DOMAINS])
def test_level1_inside_the_ports_domain(adapter, op, inside):
    counts = {EXACT: 0, WITHIN: 0}

    @settings(max_examples=EXAMPLES, database=None, suppress_health_check=list(HealthCheck))
    @given(cases.strategy(op).filter(inside))
    def body(case):
        _, out = runner.run_case(adapter, op, case)
        assert out.status in (EXACT, WITHIN), out.message
        counts[out.status] += 1

    body()
    assert sum(counts.values()) >= EXAMPLES // 2


# -- the differences, each on its minimal case ------------------------------------------------------


def test_torcheggroll_clamps_the_rank():
    """W (1, 2), R = 2: torcheggroll asks for one factor (r = min(R, 1, 2) = 1) scaled σ/√1, where the
    reference (and npegg) use both factors scaled σ/√2. Both perturbations have unit-variance
    entries; the reference's rank is the one asked for. Verdict: a convention of the port."""
    import torcheggroll.es as tes
    from torch_common import RandnFeed, patched
    model = torch.nn.Linear(2, 1, bias=False)
    es = tes.TorchEggrollES(model, pop_size=2, sigma=0.5, rank=2)
    with patched(tes, RandnFeed([np.ones((3, 1), np.float32)])) as feed:
        es.prepare_population()
    assert feed.asked == [(3, 1)]


def test_torcheggroll_zscore_uses_the_unbiased_std():
    """raw = (0, 1): the reference's z-score is ±0.5/√(0.25 + 1e-5) ≈ ±0.99998; torcheggroll's is ±0.5/0.7071
    = ±0.7071 — the same direction, the update scaled by √((P − 1)/P) (a learning-rate factor)."""
    case = {"raw": np.array([0.0, 1.0], np.float32), "group_size": 0}
    got = TEG.ADAPTER.run("fitness_zscore", case)["f"]
    want = np.array([-0.5, 0.5]) / np.sqrt(0.25 + 1e-5)
    assert np.allclose(got, want * math.sqrt(1 / 2) * math.sqrt(0.25 + 1e-5) / 0.5, rtol=1e-6)


def _record_trainer_forwards(noise_reuse, pop):
    """The output each member's model gives inside EGGROLLTrainer.step, for Linear(1, 1) W = 1, x = 1."""
    from eggroll_trainer import EGGROLLTrainer
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(model.weight)
    seen = []

    def fitness(m):
        with torch.no_grad():
            seen.append(float(m(torch.ones(1, 1))))
        return seen[-1]

    tr = EGGROLLTrainer(model.parameters(), model, fitness, population_size=pop, sigma=0.5, rank=1,
                        noise_reuse=noise_reuse, learning_rate=0.0)
    weights = [float(tr._apply_perturbations(n, 0)["weight"]) for n in range(pop)]   # at W = 1, member by member
    tr.step()
    return np.array(seen), np.array(weights)


def test_eggroll_trainer_builds_each_member_on_the_previous_one():
    """Antithetic (noise_reuse = 1), P = 2: member 0 sees W + E, member 1 should see W − E but sees W
    (its −E is added to member 0's weights). Default (noise_reuse = 0), P = 3: member n sees
    W + E₀ + … + Eₙ, a random walk. By the paper each member is θ + σεₙ: the port is wrong."""
    seen, alone = _record_trainer_forwards(1, 2)
    assert np.isclose(seen[0], alone[0]) and alone[1] == pytest.approx(2 - alone[0])       # W ± E built alone
    assert seen[1] == pytest.approx(1.0, abs=1e-6) and abs(alone[1] - 1.0) > 1e-3           # but the step runs W
    seen, alone = _record_trainer_forwards(0, 3)
    assert np.allclose(seen, 1 + np.cumsum(alone - 1), atol=1e-5)


def test_eggroll_trainer_gives_every_parameter_the_same_noise():
    """Linear(2, 1) with a bias, rank 1: the bias's noise is σ times the first value of the weight's
    draw (B[0, 0]) — the generator is re-seeded per member, not per parameter. By the paper each
    parameter's noise is independent: the port is wrong."""
    from eggroll_trainer import EGGROLLTrainer
    model = torch.nn.Linear(2, 1)
    tr = EGGROLLTrainer(model.parameters(), model, lambda m: 0.0, population_size=2, sigma=1.0, rank=1, noise_reuse=1)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    pert = tr._apply_perturbations(0, 0)
    tr.rng.manual_seed(0)
    draw = torch.randn(3, generator=tr.rng)                 # member 0, epoch 0: key 0; B = draw[:2], A = draw[2:]
    assert torch.allclose(pert["bias"] - b0, draw[:1])
    assert torch.allclose(pert["weight"] - w0, draw[2:].view(1, 1) @ draw[:2].view(2, 1).T)


def test_eggroll_trainer_ignores_its_seed():
    """seed=0 and seed=1 perturb member 0 identically: the key is epoch·10⁶ + member only."""
    from eggroll_trainer import EGGROLLTrainer
    out = []
    for seed in (0, 1):
        model = torch.nn.Linear(3, 2)
        torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)
        tr = EGGROLLTrainer(model.parameters(), model, lambda m: 0.0, population_size=2, seed=seed, noise_reuse=1)
        out.append(tr._apply_perturbations(0, 0)["weight"])
    assert torch.equal(out[0], out[1])


def test_eggroll_es_noise_is_full_rank_with_variance_sigma2_over_r():
    """eggroll-es's 'low-rank' perturbation of an (8, 8) matrix at rank 1 has rank 8, and at rank 4 its
    entries have variance σ²/r = 0.25 (σ = 1), not the σ² of E = A Bᵀ/√r. Tolerance: an entry is
    Σₖ aₖbₖ/r with E[x⁴] = (3r + 6)/r³, so the mean of x² over n = 40 000 entries has std
    √((18/64 − 1/16)/40 000) = 0.0023; allow 4 of them. By the paper E is rank r with unit
    entries: the port is not EGGROLL (it is full-rank ES with product-of-normals noise, step σ/√r)."""
    from eggroll.core import EggrollConfig, LowRankNoiser
    pert = LowRankNoiser({"w": (8, 8)}, EggrollConfig(rank=1, sigma=1.0, device="cpu", antithetic=False)).sample_perturbations(1)
    assert np.linalg.matrix_rank(pert[0]["w"].numpy().astype(np.float64)) == 8
    big = LowRankNoiser({"w": (200, 200)}, EggrollConfig(rank=4, sigma=1.0, device="cpu", seed=0, antithetic=False))
    x = big.sample_perturbations(1)[0]["w"].numpy().astype(np.float64)
    assert abs(np.mean(x ** 2) - 0.25) < 4 * 0.0023


# -- statistical conformance: the regression problem, each port with its own RNG ---------------------
# As tests/conformance/test_stats.py: epochs to validation MSE 300, margin 1.2 (ratio of geometric
# means), 90 % interval. npegg's reference sample is 20 seeds. npegg's log epochs have std 0.11, so
# with K = 20 a side the interval is about ±1.69·0.11·√(2/20) = ±0.059 (±6 %); at K = 10 against 20,
# ±7 %. The runs are the same in torch_reports.py, which writes the scoreboard's rows.
MARGIN = REG.MARGIN
K_REFERENCE, K_TORCHEGGROLL, K_EGGROLL_ES, K_TRAINER = REG.K_REFERENCE, REG.K_TORCHEGGROLL, REG.K_EGGROLL_ES, REG.K_TRAINER


@pytest.fixture(scope="module")
def npegg_reference():
    return S.npegg_epochs(range(K_REFERENCE))


def _verdict(epochs, reference, name):
    r = S.tost(epochs, reference, MARGIN, log=True, metric=f"{name}: epochs to MSE 300")
    print(r.summary())
    return r


@pytest.mark.slow
def test_torcheggroll_is_statistically_equivalent(npegg_reference):
    """Equivalent within ±20 %; measured it needs ~7 % fewer epochs than npegg (ratio 0.93)."""
    r = _verdict([REG.torcheggroll_epochs(s) for s in range(K_TORCHEGGROLL)], npegg_reference, "torcheggroll")
    assert r.verdict == "equivalent", r.summary()


@pytest.mark.slow
def test_eggroll_es_needs_fewer_epochs(npegg_reference):
    """Its full-rank product noise at npegg's σ and learning rate reaches the target sooner than npegg's
    rank-1 EGGROLL on this small MLP: the whole 90 % interval of the ratio lies below 1."""
    r = _verdict([REG.eggroll_es_epochs(s) for s in range(K_EGGROLL_ES)], npegg_reference, "eggroll-es")
    assert r.ci[1] < 1.0, r.summary()


@pytest.mark.slow
def test_eggroll_trainer_default_is_statistically_different(npegg_reference):
    """Its default (noise_reuse = 0: members built on each other, no antithetic pairs) does not reach the
    target within 100 epochs (npegg: about 60), so 5 seeds suffice: the interval is npegg's alone."""
    r = _verdict([REG.eggroll_trainer_epochs(s, budget=100) for s in range(K_TRAINER)], npegg_reference,
                 "eggroll-trainer")
    assert r.verdict == "different", r.summary()
