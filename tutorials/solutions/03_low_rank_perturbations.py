"""Solutions to the exercises of chapter 3 (run by tests/test_tutorials.py; each one checks itself)."""
import time

import numpy as np


def exercise_1(P=16, I=24, O=12, r=3, sigma=0.2):
    """x (W + σ/√r A Bᵀ) = x W + σ/√r (x A) Bᵀ: per member an (I·r) and an (r·O) product."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((I, O))
    x = rng.standard_normal((P, I))
    A, B = rng.standard_normal((P, I, r)), rng.standard_normal((P, O, r))
    slow = np.stack([x[p] @ (W + sigma / np.sqrt(r) * A[p] @ B[p].T) for p in range(P)])
    fast = x @ W + sigma / np.sqrt(r) * np.einsum("pr,por->po", np.einsum("pi,pir->pr", x, A), B)
    err = np.abs(fast - slow).max()
    print(f"exercise 1: max |fast - materialised| = {err:.1e}")
    assert err < 1e-12
    return err


def exercise_2(O=50, I=40, r=3):
    """P members give P/2 distinct rank-r terms: rank min(P r / 2, O, I) = 12, 24, 40."""
    rng = np.random.default_rng(1)
    ranks = {}
    for P in (8, 16, 32):
        A, B = rng.standard_normal((P // 2, O, r)), rng.standard_normal((P // 2, I, r))
        f = rng.standard_normal(P)
        w = f[0::2] - f[1::2]                                    # partners: (f_2k − f_2k+1) A_k B_kᵀ
        G = np.einsum("k,kor,kir->oi", w, A, B)
        ranks[P] = int(np.linalg.matrix_rank(G))
        print(f"exercise 2: P = {P}: rank {ranks[P]}, predicted {min(P * r // 2, O, I)}")
        assert ranks[P] == min(P * r // 2, O, I)
    return ranks


def exercise_3(samples=2_000_000):
    """Entry e = (1/√r) Σ_j a_j b_j. E e² = 1. E e⁴ = (1/r²)[r E a⁴ E b⁴ + 3 r(r−1)] = (9r + 3r² − 3r)/r² = 3 + 6/r."""
    rng = np.random.default_rng(2)
    out = {}
    for r in (1, 2, 4, 8):
        e = np.einsum("mr,mr->m", rng.standard_normal((samples, r)), rng.standard_normal((samples, r))) / np.sqrt(r)
        m2, m4 = np.mean(e**2), np.mean(e**4)
        se4 = np.std(e**4) / np.sqrt(samples)
        print(f"exercise 3: r = {r}: E e^2 = {m2:.4f}, E e^4 = {m4:.3f} ± {se4:.3f}, 3 + 6/r = {3 + 6 / r:.3f}")
        assert abs(m2 - 1) < 5 * np.std(e**2) / np.sqrt(samples)
        assert abs(m4 - (3 + 6 / r)) < 5 * se4
        out[r] = m4
    return out


def exercise_4(P=256, O=64, I=64, r=2):
    """Both forms do O·I·P·r multiply-adds; the matmul does them in one BLAS call (blocked for the cache,
    vectorised), the loop in P small calls with Python overhead and P (O, I) temporaries."""
    rng = np.random.default_rng(2)
    A, B = rng.standard_normal((P, O, r)), rng.standard_normal((P, I, r))
    w = rng.standard_normal(P)                                   # f_n · s_n σ/√r, folded together

    def loop():
        G = np.zeros((O, I))
        for n in range(P):
            G += w[n] * A[n] @ B[n].T                            # (O, I) outer products
        return G

    def one_matmul():
        Aw = (A * w[:, None, None]).transpose(1, 0, 2).reshape(O, P * r)
        return Aw @ B.transpose(0, 2, 1).reshape(P * r, I)       # (O × P·r) @ (P·r × I)

    times = {}
    for fn in (loop, one_matmul):
        t = time.perf_counter()
        out = fn()
        times[fn.__name__] = time.perf_counter() - t
    assert np.allclose(loop(), one_matmul(), rtol=1e-10, atol=1e-10)
    print(f"exercise 4: equal; {O * I * P * r:,} multiply-adds each; loop {1e3 * times['loop']:.1f} ms, "
          f"one matmul {1e3 * times['one_matmul']:.2f} ms (timings vary; not asserted)")
    return out


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
    exercise_4()
