"""Write the PyTorch ports' scoreboard rows: ``python tests/conformance/adapters/torch_reports.py``.

Run in the ports venv (the ``ports`` extra, Python ≥ 3.12). For each port it writes
``tests/conformance/reports/<port>.json`` in the kit's ``--report`` format (listed in
tests/conformance/adapters.txt as ``json:…``, since the scoreboard's own venv has no torch):
the level-(i)/(iii) results of ``npegg.conformance.runner.check_adapter`` with ``EXAMPLES`` cases
per operation (seed 0), each difference with its minimal case and the verdict on who is right
(``VERDICTS``), and the statistical comparison on the regression problem as the ``es_step`` row
(``npegg.conformance.stats``; status 'statistically equivalent', 'differs', or 'inconclusive'
when K seeds cannot tell). tests/conformance/test_ports.py checks these files against a fresh run.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

EXAMPLES = 25
OUT = HERE.parent / "reports"

#: (port, operation) → the verdict on a difference, by the paper's definitions and the reference's code
VERDICTS = {
    ("torcheggroll", "do_mm"): "convention of the port: it clamps the rank to min(O, I) and scales by σ/√min; the "
    "reference takes R as given (E = A Bᵀ/√R). Both perturbations have unit-variance entries; for R ≤ min(O, I) the "
    "two agree (test_ports: inside the port's domain).",
    ("torcheggroll", "do_emb"): "as do_mm: the rank is clamped to min(V, D).",
    ("torcheggroll", "mlp_forward"): "as do_mm: the rank is clamped per layer; within each layer's rank the forward agrees.",
    ("torcheggroll", "fitness_zscore"): "convention of the port: the unbiased std (and no 1e-5, no groups), so its "
    "z-scores are the reference's × √((P − 1)/P): a learning-rate factor, not an error. The reference (and the "
    "paper's code) use the population variance + 1e-5.",
    ("torcheggroll", "grad_lowrank"): "convention of the port: its update always centres the fitness it is given "
    "(f − f̄). With complete antithetic pairs that term cancels and it agrees; with an unpaired member (odd P) it "
    "differs from the reference's Σ fₙεₙ. Not an error for its own use (it only runs complete pairs).",
    ("torcheggroll", "grad_full"): "as grad_lowrank.",
    ("eggroll-trainer", "fitness_zscore"): "convention of the port: the unbiased std + 1e-8, and with groups each "
    "group's own std (the reference divides every group by the whole population's std); P = 1 gives NaN.",
    ("eggroll-trainer", "mlp_forward"): "the port is wrong: it re-seeds one generator per member, so every parameter "
    "of a member gets the same stream (a bias's noise is the first entries of the weight's B). By the paper each "
    "leaf's noise is independent. Its step also builds each member on the previous member's perturbed weights "
    "(test_ports: odd members run the unperturbed model), and its seed argument does not change its noise.",
    ("eggroll-es", "fitness_zscore"): "convention of the port ('normalized' shaping): the unbiased std + 1e-8, no "
    "groups; P = 1 gives NaN.",
    ("eggroll-es", "fitness_centered_ranks"): "the port differs on ties (ranks from argsort, so tied scores get "
    "different fitnesses, ordered by position) and divides by P − 1 = 0 at P = 1; the reference-style centred "
    "ranks share the mean rank among ties.",
}


def stat_row(name: str, result, k: int, k_reference: int) -> dict:
    """The ``es_step`` row of a statistical comparison (``stats.Equivalence``)."""
    from npegg.conformance.protocol import DIFFERS, STAT_EQUIV
    status = {"equivalent": STAT_EQUIV, "different": DIFFERS}.get(result.verdict, "inconclusive")
    return {"level": 3, "status": status, "cases": k, "exact": 0, "within": 0, "failing": int(status == DIFFERS),
            "worst_ratio": 0.0, "message": result.summary(), "minimal_case": "", "replay": "", "seconds": 0.0,
            "expected_failure": False, "extra": {"minimal": "the regression problem of npegg.conformance.stats: "
                                                            f"{k} seeds of the port, {k_reference} of npegg"},
            "verdict": STAT_VERDICTS.get(name, "")}


STAT_VERDICTS = {
    "torcheggroll": "equivalent within the ±20 % margin; it needs about 7 % fewer epochs than npegg (the interval "
    "excludes 1). npegg run with Gaussian noise drawn per pair instead of its table needs 0.957× [0.902, 1.017] "
    "npegg's epochs, and torcheggroll 0.971× [0.907, 1.039] of that: the gap is consistent with npegg's "
    "Irwin–Hall table (overlapping slices, kurtosis 2.85), but neither comparison is significant at 20 seeds.",
    "eggroll-trainer": "the port is wrong: by default (noise_reuse = 0) each member is built on the previous "
    "member's perturbed weights (a random walk of P steps) and no antithetic pairs are used; it does not reach "
    "the target within 100 epochs. With noise_reuse = 1 its odd members run the unperturbed model.",
    "eggroll-es": "a different algorithm: its noise is elementwise products (full rank, variance σ²/r), not "
    "EGGROLL's rank-r A Bᵀ/√r. At npegg's σ and learning rate (mapped) it needs about 16 % fewer epochs on "
    "this small MLP, outside the margin's lower end: not a bug in the ES sense, but not EGGROLL.",
}


def level1(adapter, failures) -> dict:
    from npegg.conformance import runner
    results = runner.check_adapter(adapter, ops=sorted(adapter.claims), max_examples=EXAMPLES, seed=0, failures=failures)
    report = runner.as_json(results, adapter, f"tests/conformance/adapters/{Path(sys.modules[type(adapter).__module__].__file__).name}:ADAPTER",
                            EXAMPLES, 0)
    for op, row in report["operations"].items():
        if (adapter.name, op) in VERDICTS:
            row["verdict"] = VERDICTS[(adapter.name, op)]
        row["minimal_case"] = ""          # a temporary file: the minimal case itself is in extra.minimal
        row["replay"] = ""
    return report


def main() -> int:
    import torch
    torch.set_num_threads(1)
    import torch_eggroll_es as EES
    import torch_eggroll_trainer as ETR
    import torch_regression as REG
    import torch_torcheggroll as TEG
    from npegg.conformance import stats as S

    from torch_regression import K_EGGROLL_ES, K_REFERENCE, K_TORCHEGGROLL, K_TRAINER
    reference = S.npegg_epochs(range(K_REFERENCE))
    runs = {"torcheggroll": (TEG.ADAPTER, lambda: [REG.torcheggroll_epochs(s) for s in range(K_TORCHEGGROLL)], K_TORCHEGGROLL),
            "eggroll-trainer": (ETR.ADAPTER, lambda: [REG.eggroll_trainer_epochs(s, budget=100) for s in range(K_TRAINER)],
                                K_TRAINER),
            "eggroll-es": (EES.ADAPTER, lambda: [REG.eggroll_es_epochs(s) for s in range(K_EGGROLL_ES)], K_EGGROLL_ES)}
    OUT.mkdir(exist_ok=True)
    for name, (adapter, stat, k) in runs.items():
        with tempfile.TemporaryDirectory() as tmp:
            report = level1(adapter, tmp)
        r = S.tost(stat(), reference, REG.MARGIN, log=True, metric=f"{name}: epochs to MSE 300")
        report["operations"]["es_step"] = stat_row(name, r, k, K_REFERENCE)
        (OUT / f"{name}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"{name}: {r.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
