"""Solutions to the exercises of chapter 6 (run by tests/test_tutorials.py; each one checks itself)."""
import numpy as np

from npegg.models.mingru import linear_scan_loop
from npegg.program.baselines import baselines
from npegg.program.data import load_corpus


def compose(x, y):
    """(a1, b1) • (a2, b2) = (a1 a2, a2 b1 + b2): first x, then y."""
    return x[0] * y[0], y[0] * x[1] + y[1]


def exercise_1(P=3, T=64, D=8, chunk=16):
    rng = np.random.default_rng(0)
    x, y, z = [(rng.uniform(0, 1, D), rng.standard_normal(D)) for _ in range(3)]
    left, right = compose(compose(x, y), z), compose(x, compose(y, z))
    assert all(np.allclose(u, v, rtol=1e-14, atol=1e-14) for u, v in zip(left, right))
    a = rng.uniform(0, 1, (P, T, D))
    b = rng.standard_normal((P, T, D))
    h0 = rng.standard_normal((P, D))
    out = np.empty_like(b)
    h = h0
    for lo in range(0, T, chunk):
        local = linear_scan_loop(a[:, lo:lo + chunk], b[:, lo:lo + chunk])      # (P, c, D) from h = 0
        carry = np.cumprod(a[:, lo:lo + chunk], axis=1)                         # (P, c, D) products of a
        out[:, lo:lo + chunk] = local + carry * h[:, None]
        h = out[:, lo + chunk - 1]
    err = np.abs(out - linear_scan_loop(a, b, h0)).max()
    print(f"exercise 1: associative; chunked scan vs loop: max |difference| {err:.1e}")
    assert err < 1e-12
    return err


def bigram_bpb(train, valid, k):
    counts = np.zeros((256, 256))
    np.add.at(counts, (train[:-1], train[1:]), 1)
    prev = np.concatenate([[train[-1]], valid[:-1]])                           # the byte before each valid byte
    p = (counts[prev, valid] + k) / (counts[prev].sum(1) + 256 * k)
    return float(-np.mean(np.log2(p)))


def exercise_2():
    corpus = load_corpus(None, max_docs=40)
    tr, va = corpus.train.astype(np.int64), corpus.valid.astype(np.int64)
    scores = {k: bigram_bpb(tr, va, k) for k in (0.01, 0.1, 0.3, 1.0)}
    assert abs(scores[1.0] - baselines(corpus.train, corpus.valid)["bigram"]) < 1e-9
    best = min(scores, key=scores.get)
    print("exercise 2: " + ", ".join(f"k = {k}: {v:.3f}" for k, v in scores.items()) + f"; best k = {best}")
    assert scores[best] < scores[1.0]                    # add-one over-smooths 65 536 cells of sparse counts
    return scores


def exercise_3():
    """E_p̂[−log2 q] − H(p̂) = KL(p̂ ‖ q) ≥ 0, with equality only at q = p̂."""
    corpus = load_corpus(None, max_docs=40)
    counts = np.bincount(corpus.valid, minlength=256)
    p_hat = counts / counts.sum()
    nz = p_hat > 0
    H = float(-(p_hat[nz] * np.log2(p_hat[nz])).sum())
    unigram = baselines(corpus.train, corpus.valid)["unigram"]
    print(f"exercise 3: entropy of the validation bytes {H:.3f} bits <= unigram baseline {unigram:.3f}")
    assert H <= unigram
    return H




def exercise_4(d=1000, alpha=4 / 1005, seed=0):
    """ES on F = −|θ|²/2 (exact pair quotients), 1600 pairs-evaluations either way. With a fixed α tuned for
    N = 4 (α*(4) = 4/1005), N = 64 takes 16× fewer steps of the same length and loses; with α*(N) each step of
    N = 64 is ~16× longer and the two end close (1 − N/(N+d+1))^steps: 0.203 vs 0.215."""
    rng = np.random.default_rng(seed)

    def run(N, steps, a):
        theta = rng.standard_normal(d)
        theta /= np.linalg.norm(theta)
        for _ in range(steps):
            e = rng.standard_normal((N, d))
            theta = theta + a * ((e @ -theta) @ e / N)
        return float(theta @ theta)

    fixed = {N: run(N, 1600 // N, alpha) for N in (4, 64)}
    optimal = {N: run(N, 1600 // N, N / (N + d + 1)) for N in (4, 64)}
    print(f"exercise 4: |θ|² after 1600 pair evaluations: fixed alpha {fixed}, alpha*(N) {optimal}")
    assert fixed[4] < 0.5 * fixed[64]                          # a fixed step: the small population wins
    assert abs(np.log(optimal[64] / optimal[4])) < 0.3         # the optimal step: about a tie
    return fixed, optimal


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
    exercise_4()
