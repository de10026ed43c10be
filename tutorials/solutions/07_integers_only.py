"""Solutions to the exercises of chapter 7 (run by tests/test_tutorials.py; each one checks itself)."""
import numpy as np

from npegg.int8 import intmm, loglik


def exercise_1():
    """Write y = q·ab + r·a + t with 0 ≤ t < a, 0 ≤ r < b: ⌊y/a⌋ = q·b + r, then ⌊(q·b + r)/b⌋ = q = ⌊y/(ab)⌋."""
    y = np.arange(-5000, 5001)
    for a, b in ((16, 16), (3, 7), (80, 2)):
        assert np.array_equal((y // a) // b, y // (a * b))
    assert np.array_equal((y >> 4) >> 4, y >> 8)
    # rounding to nearest (halves up) does not compose: search for the smallest counterexample
    rnd = lambda v, d: np.floor(v / d + 0.5).astype(int)
    bad = y[rnd(rnd(y, 4), 4) != rnd(y, 16)]
    print(f"exercise 1: floors compose on all |y| <= 5000; rounding to nearest fails first at y = {bad[np.argmin(np.abs(bad))]}")
    assert bad.size > 0
    return int(bad[np.argmin(np.abs(bad))])


def exercise_2():
    """EXP2's floor costs 16·log2(x_j / ⌊x_j⌋), x_j = 16·2^(j/16), largest at j = 5 (logit −123): 1.03 units,
    and LOG2's floor adds the rest: −126 against −128."""
    logits = np.repeat(np.arange(-127, 128, dtype=np.int8)[:, None], 256, axis=1)   # (255, 256)
    err = loglik.int_ll(logits, np.zeros(255, np.int64)) + 128                         # units above exact
    worst = int(np.arange(-127, 128)[np.argmax(err)])
    print(f"exercise 2: worst equal logit {worst}, {err.max()} units above the exact -128")
    assert worst == -123 and err.max() == 2 and err.min() >= 0
    return worst


def exercise_3():
    """Every partial sum is ≤ K·127·7 = 889 K, exact in float32 while ≤ 2²⁴: K ≤ 18 872."""
    K = (1 << 24) // (127 * 7)
    assert intmm.exact_dtype(K, 127, 7) == np.float32 and intmm.exact_dtype(K + 1, 127, 7) != np.float32
    a = np.full(K + 1, 127, np.float32)
    w = np.full(K + 1, 7, np.float32)
    exact = (K + 1) * 889                                    # 16 778 097 > 2²⁴ and odd: not a float32
    got = int(np.dot(a, w))
    print(f"exercise 3: K = {K}; at K + 1 the float32 dot gives {got}, exact {exact}")
    assert got != exact and int(np.dot(a[:K], w[:K])) == K * 889
    return K


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
