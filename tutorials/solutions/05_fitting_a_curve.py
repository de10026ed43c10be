"""Solutions to the exercises of chapter 5 (run by tests/test_tutorials.py; each one checks itself)."""
import numpy as np

from npegg.es import ES
from npegg.models import Parameter
from npegg.noise import NoiseTable
from npegg.optim import cosine_decay_schedule, linear_schedule


def exercise_1(E=1000):
    """linear: 1 − e/E (then 0); cosine: ½(1 + cos(π min(e, E)/E))."""
    mine_lin = lambda e: max(0.0, 1 - e / E)
    mine_cos = lambda e: 0.5 * (1 + np.cos(np.pi * min(e, E) / E))
    lin, cos = linear_schedule(1.0, 0.0, E), cosine_decay_schedule(1.0, E)
    es_ = range(0, E + 50)
    err = max(max(abs(mine_lin(e) - float(lin(e))), abs(mine_cos(e) - float(cos(e)))) for e in es_)
    mid = next(e for e in range(E) if float(cos(e)) < float(lin(e)))
    print(f"exercise 1: max |difference| {err:.1e}; cosine drops below linear from epoch {mid} on (of {E})")
    assert err < 1e-12 and mid == E // 2 + 1
    return err


def exercise_2(d=50, P=1024):
    """With z-scores, |G| = (σ/√P)|Σ f ε| and |Σ f ε| does not depend on σ (for small σ the z-scores are
    ≈ ∇F·ε/|∇F ε|-ish, of unit spread): |G| ∝ σ, so the SGD step lr·G scales like lr·σ, not lr·σ²."""
    table = NoiseTable(seed=0)
    target = np.linspace(-1, 1, d)
    norms = {}
    for sigma in (0.05, 0.1, 0.2):
        es, state = ES.create(Parameter, dict(raw_value=np.zeros(d)), pop_size=P, sigma=sigma, lr=1.0, seed=0,
                              noise=table)
        thetas = es.forward(state)                                     # (P, d)
        new = es.step(state, -np.sum((thetas - target) ** 2, axis=1))  # SGD, lr = 1: the step is −G
        norms[sigma] = float(np.linalg.norm(new.params - state.params))
    r1, r2 = norms[0.1] / norms[0.05], norms[0.2] / norms[0.1]
    print(f"exercise 2: |step| at sigma 0.05, 0.1, 0.2: {[round(v, 4) for v in norms.values()]}; ratios {r1:.3f}, {r2:.3f}")
    assert abs(r1 - 2) < 0.1 and abs(r2 - 2) < 0.1                     # doubling σ doubles the step (not 4x)
    return norms


def exercise_3(E=1000, P=4096, group=128, n_train=1024):
    """Epoch e scores its P/group = 32 groups on points (32 e + k) mod 1024, k < 32: the training set in order,
    1024/32 = 32 epochs per pass, 1000/32 = 31.25 passes: every point is seen 31 or 32 times."""
    groups = P // group
    seen = np.zeros(n_train, int)
    for e in range(E):
        seen[(np.arange(groups) + e * groups) % n_train] += 1
    print(f"exercise 3: every training point seen {seen.min()} to {seen.max()} times")
    assert seen.min() == 31 and seen.max() == 32 and seen.sum() == E * groups
    return seen


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
