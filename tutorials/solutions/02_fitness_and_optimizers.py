"""Solutions to the exercises of chapter 2 (run by tests/test_tutorials.py; each one checks itself)."""
import numpy as np


def exercise_1():
    """Without correction the first step is lr·(1−β1)G / (√((1−β2)G²) + ε) = lr·0.1/√0.001 ≈ 3.16 lr
    per coordinate, whatever the scale of G; with the correction it is lr·G/(|G| + ε) ≈ lr."""
    rng = np.random.default_rng(0)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    for scale in (1e-3, 1.0, 1e3):
        G = scale * rng.standard_normal(50)
        m, v = (1 - b1) * G, (1 - b2) * G**2                   # after one step from zero moments
        raw_step = lr * m / (np.sqrt(v) + eps)
        corrected = lr * (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)
        ratio = np.abs(raw_step).mean() / lr
        print(f"exercise 1: |G| ~ {scale:g}: uncorrected first step {ratio:.3f} lr, "
              f"corrected {np.abs(corrected).mean() / lr:.6f} lr")
        assert abs(ratio - 0.1 / np.sqrt(0.001)) < 1e-3 * ratio
        assert np.allclose(np.abs(corrected), lr * np.abs(G) / (np.abs(G) + eps), rtol=1e-12)  # = lr but for ε
    return 0.1 / np.sqrt(0.001)


def exercise_2(P=64, d=10, c=5.0):
    """Σ_n (f_n + c) s_n ε_⌊n/2⌋ = Σ_n f_n s_n ε + c Σ_k (ε_k − ε_k): the constant cancels in every pair.
    With independent noise the extra term c Σ_n ε_n is a random vector of norm ≈ c √(P d)."""
    rng = np.random.default_rng(1)
    f = rng.standard_normal(P)
    e_pairs = np.repeat(rng.standard_normal((P // 2, d)), 2, axis=0) * np.where(np.arange(P) % 2, -1, 1)[:, None]
    e_indep = rng.standard_normal((P, d))
    anti = np.abs((f + c) @ e_pairs - f @ e_pairs).max()
    indep = np.linalg.norm((f + c) @ e_indep - f @ e_indep)
    print(f"exercise 2: antithetic change {anti:.1e}, independent change {indep:.2f} (c sqrt(P d) = {c * np.sqrt(P * d):.2f})")
    assert anti < 1e-12 and indep > 0.5 * c * np.sqrt(P * d)
    return anti, indep


def exercise_3(P=64, d=10, sigma=0.1):
    """Equal scores carry no information. z-scores: (R − R̄)/√(0 + 10⁻⁵) = 0. Centered ranks: tied scores
    share their mean rank (P − 1)/2, which centres to 0. Pair signs: sign(0) = 0. So f = 0 and the step is
    exactly zero. Ranks that broke ties by member order would give f_n = n/(P − 1) − ½: partners differ by
    −1/(P − 1), and the step is Σ_k −ε_k/(P − 1), scaled: a small step along pure noise."""
    from npegg import fitness
    from npegg.es import ES
    from npegg.models import Parameter

    R = np.full(P, 0.5)                 # 0.5: its mean is exact (for 0.7 the mean's rounding leaves
    for shaper in (fitness.zscore, fitness.centered_ranks, fitness.pair_sign):   # z-scores of ±1e-14, equal
        assert not np.any(shaper(R)), shaper.__name__                            # for all: cancelled in pairs)
    assert np.ptp(fitness.zscore(np.full(P, 0.7))) == 0                 # a constant, whatever its rounding
    es, state = ES.create(Parameter, dict(raw_value=np.ones(d)), pop_size=P, sigma=sigma, lr=1.0,
                          fitness="centered_ranks")
    new = es.step(state, R)
    assert np.array_equal(new.params, state.params)                       # not one bit moves
    eps = (es.forward(state) - state.params) / sigma                      # (P, d): s_n ε_n
    by_order = np.arange(P) / (P - 1) - 0.5                               # ties broken by member order
    g_order = by_order @ eps / (P * sigma)
    pairs = eps[0::2]                                                     # ε_k
    expected = -pairs.sum(0) / ((P - 1) * P * sigma)                     # partners differ by −1/(P − 1)
    assert np.abs(g_order - expected).max() < 1e-3 * np.abs(expected).max()   # ε read back from float32 θ ± σε
    print(f"exercise 3: equal scores give zero fitnesses and an unchanged θ; order-broken ties would step "
          f"|ĝ| = {np.linalg.norm(g_order):.3f} along noise")
    return np.linalg.norm(g_order)


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
