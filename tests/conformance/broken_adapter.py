"""A deliberately broken port, to prove the kit catches, shrinks, saves and replays its failures.

It is npegg with two bugs that ports really make:

- ``do_mm`` scales the low-rank term by σ instead of σ/√R (right at rank 1 only);
- ``qegg_fitness`` gives a tie (equal pair scores) +1 instead of 0.

Everything else it forwards to npegg, claiming only a few operations (the others must be
reported as not claimed).
"""
import numpy as np

from npegg.conformance.npegg_adapter import ADAPTER as NPEGG


class Broken:
    name = "broken toy"
    about = "npegg with two planted bugs (tests only)"
    claims = frozenset({"do_mm", "qegg_fitness", "fitness_zscore"})

    def run(self, op, case):
        if op == "do_mm":
            r = case["A"].shape[-1]
            return NPEGG.run(op, {**case, "sigma": case["sigma"] * np.sqrt(r)})
        out = NPEGG.run(op, case)
        if op == "qegg_fitness":
            out["f"] = np.where(out["f"] == 0, 1, out["f"]).astype(np.int8)
        return out


ADAPTER = Broken()
