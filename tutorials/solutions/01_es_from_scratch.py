"""Solutions to the exercises of chapter 1 (run by tests/test_tutorials.py; each one checks itself)."""
import numpy as np


def exercise_1():
    """F(x) = -0.1 x² + cos 5x: F_σ = -0.1 (x² + σ²) + e^{-25σ²/2} cos 5x.

    Concave when the bumps' curvature 25 e^{-25σ²/2} is at most the bowl's 0.2:
    σ ≥ sqrt(2 ln(125) / 25). A single maximum needs less than concavity (a dent without a peak
    is allowed), so the grid count gives a σ that is no larger.
    """
    grid = np.linspace(-8, 8, 32001)

    def n_max(sigma):
        v = -0.1 * (grid**2 + sigma**2) + np.exp(-12.5 * sigma**2) * np.cos(5 * grid)
        return int(np.sum((v[1:-1] > v[:-2]) & (v[1:-1] > v[2:])))

    concave = np.sqrt(2 * np.log(125) / 25)
    lo, hi = 0.0, concave
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if n_max(mid) > 1 else (lo, mid)
    print(f"exercise 1: concave for sigma > {concave:.3f}, a single maximum for sigma > {hi:.3f}")
    assert n_max(concave) == 1 and hi <= concave and n_max(0.9 * hi) > 1
    return concave, hi


def exercise_2(samples=400_000, seed=0):
    """E[(g·ε)² |ε|²] = Σ_ij g_i g_j E[ε_i ε_j |ε|²] = Σ_i g_i² (E ε_i⁴ + (d−1)) = (d+2)|g|²."""
    rng = np.random.default_rng(seed)
    d = 5
    g = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    e = rng.standard_normal((samples, d))
    v = (e @ g) ** 2 * np.sum(e**2, axis=1)                   # (samples,)
    mean, se = v.mean(), v.std() / np.sqrt(samples)
    print(f"exercise 2: Monte Carlo {mean:.3f} ± {se:.3f}, (d+2)|g|^2 = {(d + 2) * g @ g:.3f}")
    assert abs(mean - (d + 2) * g @ g) < 5 * se                 # five standard errors
    return mean


def exercise_3(d=200, N=4, steps=3000, seed=0):
    """E|θ'|²/|θ|² = 1 − 2α + α²(1 + (d+1)/N) is 1 at α = 2α*, and 1 + 3α* > 1 at 3α*: divergence."""
    rng = np.random.default_rng(seed)
    a_star = N / (N + d + 1)
    out = {}
    for mult in (2, 3):
        alpha = mult * a_star
        theta = rng.standard_normal(d)
        ratios = []
        for _ in range(steps):
            theta /= np.linalg.norm(theta)                      # renormalise: only the ratio matters
            e = rng.standard_normal((N, d))
            new = theta + alpha * ((e @ -theta) @ e / N)
            ratios.append(new @ new)
            theta = new
        r = np.array(ratios)
        predicted = 1 - 2 * alpha + alpha**2 * (1 + (d + 1) / N)
        print(f"exercise 3: alpha = {mult} alpha*: mean ratio {r.mean():.4f} ± {r.std() / np.sqrt(steps):.4f}, "
              f"predicted {predicted:.4f}")
        assert abs(r.mean() - predicted) < 5 * r.std() / np.sqrt(steps)
        out[mult] = r.mean()
    return out


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
