"""Solutions to the exercises of chapter 10 (run by tests/test_tutorials.py; each one checks itself)."""
import math

import numpy as np


def member_noise(seed, leaf, epoch, member, size):
    """ε of one member for one leaf, a pure function of (seed, leaf, epoch, member) (as in the chapter)."""
    return np.random.default_rng([seed, leaf, epoch, member]).standard_normal(size)


def exercise_1(n=20_000):
    """Neighbours in every coordinate of (seed, leaf, epoch, member) give different, uncorrelated noise.

    For independent standard normals the sample correlation of n pairs has standard deviation
    1/√n, so |r| < 4/√n holds with probability 1 − 6·10⁻⁵ per pair (and these seeds are fixed).
    """
    base = (7, 3, 5, 11)
    e0 = member_noise(*base, n)
    worst = 0.0
    for axis in range(4):
        for delta in (1, 2):
            other = list(base)
            other[axis] += delta
            e1 = member_noise(*other, n)
            assert not np.array_equal(e0, e1), f"changing coordinate {axis} left the noise unchanged"
            r = float(np.corrcoef(e0, e1)[0, 1])
            worst = max(worst, abs(r))
            assert abs(r) < 4 / math.sqrt(n), (axis, delta, r)
    print(f"exercise 1: 8 neighbours of (seed, leaf, epoch, member) all differ; largest |correlation| "
          f"{worst:.4f} < 4/√n = {4 / math.sqrt(n):.4f}")
    return worst


def exercise_2(P=256, d=3000, W=4, seed=0):
    """Partial sums Σ_shard z_m ε_m added by a coordinator: equal to rounding, not bit for bit.

    Floating-point addition is not associative: (a + b) + c and a + (b + c) may differ in the last
    bit, so a sum cut into shards and re-added is a different computation. The bytes: each worker
    sends d float64 (a parameter-sized message, as backprop's all-reduce) instead of P/W scores.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(P)                                                    # (P,) shaped scores
    one = np.zeros(d)
    for m in range(P):                                                            # one process, in order
        one += z[m] * member_noise(1, 0, 0, m, d)
    cuts = [w * P // W for w in range(W + 1)]
    partials = []
    for w in range(W):                                                            # each worker its shard
        part = np.zeros(d)
        for m in range(cuts[w], cuts[w + 1]):
            part += z[m] * member_noise(1, 0, 0, m, d)
        partials.append(part)
    sharded = partials[0]
    for part in partials[1:]:
        sharded = sharded + part
    differ = int(np.sum(sharded != one))
    print(f"exercise 2: max |difference| {np.abs(sharded - one).max():.1e}, {differ} of {d} coordinates differ "
          f"in their bits; bytes per epoch: partial sums {W * 8 * d:,}, scores {8 * P:,} up")
    assert np.allclose(sharded, one, rtol=0, atol=1e-12) and differ > 0
    return differ


def exercise_3(d=116_224, W=8):
    """ES bytes per worker 8P/W + 8P = backprop's 2(W−1)/W · 4d  ⇒  P = 8d(W−1)/W / (8(W+1)/W) = d(W−1)/(W+1)."""
    P_cross = d * (W - 1) / (W + 1)
    es_bytes = 8 * P_cross / W + 8 * P_cross
    allreduce = 2 * (W - 1) / W * 4 * d
    print(f"exercise 3: d = {d:,}, W = {W}: ES sends as much as backprop's all-reduce at P = {P_cross:,.0f} "
          f"({es_bytes:,.0f} = {allreduce:,.0f} bytes)")
    assert math.isclose(es_bytes, allreduce, rel_tol=1e-12)
    assert P_cross > 1024 * 88                     # the default P = 1024 is ~88× below the crossover
    return P_cross


def exercise_4(P=2**20, t_member=1e-3, u0=0.02, u1=8e-6, alpha=50e-6, beta=1.25e9):
    """Star: compute P·t/W falls, the link 8P(W+1)/β grows ⇒ best W ≈ √(tβ/8), whatever P.
    Tree: ⌈log₂W⌉(α + 8P/β) grows only logarithmically ⇒ the best W is far larger.
    (t_member, u0, u1 are round numbers of the size the chapter measures on an idle core.)"""
    Ws = 2 ** np.arange(0, 21)

    def star(W):
        return math.ceil(P / W) * t_member + u0 + u1 * P + (0 if W == 1 else 2 * alpha + 8 * P * (W + 1) / beta)

    def tree(W):
        return math.ceil(P / W) * t_member + u0 + u1 * P + math.ceil(math.log2(W)) * (alpha + 8 * P / beta)

    best_star = int(Ws[np.argmin([star(int(W)) for W in Ws])])
    best_tree = int(Ws[np.argmin([tree(int(W)) for W in Ws])])
    predicted = math.sqrt(t_member * beta / 8)
    print(f"exercise 4: star best at W = {best_star} (√(tβ/8) = {predicted:.0f}), {star(best_star):.1f} s; "
          f"tree best at W = {best_tree}, {tree(best_tree):.1f} s; the replicated update alone is {u0 + u1 * P:.1f} s")
    assert predicted / 2 <= best_star <= predicted * 2
    assert best_tree > 10 * best_star and tree(best_tree) < star(best_star)
    return best_star, best_tree


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
    exercise_4()
