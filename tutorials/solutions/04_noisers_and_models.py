"""Solutions to the exercises of chapter 4 (run by tests/test_tutorials.py; each one checks itself)."""
import numpy as np

from npegg import keys as K
from npegg.noise import NoiseTable, start_indices

TABLE = NoiseTable(seed=0)
KEY = K.fold_in(K.key(3), 11)


def exercise_1():
    """t_e = ⌊e/ρ⌋ for ρ ≥ 1 (epochs 0-2, 3-5, 6-8 share noise), t_e = 0 for ρ = 0 (all epochs share)."""
    def t_e(e, rho):
        return 0 if rho == 0 else e // rho

    for rho in (3, 0):
        base = {e: TABLE.lowrank(KEY, e, np.array([4]), (5, 7), 2, rho)[0] for e in range(9)}
        for e1 in range(9):
            for e2 in range(9):
                same = np.array_equal(base[e1], base[e2])
                assert same == (t_e(e1, rho) == t_e(e2, rho)), (rho, e1, e2)
    groups = sorted({tuple(e for e in range(9) if e // 3 == g) for g in range(3)})
    print(f"exercise 1: rho = 3 groups {groups}; rho = 0: one group")
    return groups


def exercise_2(shape=(5, 7), rank=2, epoch=6):
    """Slice of (O + I)·r entries from start (wrapping at the end), reshaped (O + I, r): B = rows :I, A = rows I:."""
    O, I = shape
    members = np.array([0, 1, 9, 200, 4097])
    starts = start_indices(KEY, epoch, members, 1, TABLE.size)                         # (P,)
    L = (O + I) * rank
    idx = (starts[:, None] + np.arange(L)[None, :]) % TABLE.size                     # (P, L), wrap
    M = TABLE.table[idx].reshape(len(members), O + I, rank)
    B_hand, A_hand = M[:, :I], M[:, I:]
    A_lib, B_lib = TABLE.lowrank(KEY, epoch, members, shape, rank, 1)
    assert np.array_equal(A_hand, A_lib) and np.array_equal(B_hand, B_lib)
    assert np.array_equal(A_hand[0], A_hand[1])                                       # partners 0, 1 share
    print(f"exercise 2: members {members.tolist()} rebuilt by hand, bit for bit")
    return A_hand, B_hand


def exercise_3(T=2**23, trials=2000):
    """P(no shared start among N uniform starts) = Π_{i<N} (1 − i/T) ≈ exp(−N²/2T): 1/2 at N ≈ √(2T ln 2) ≈ 3410.
    The hash: for q < 2¹⁶, start = K0 ⊕ (q·0x45d9f3b mod 2²³), a bijection of q mod 2²³ (odd factor)."""
    n_half = int(np.ceil(np.sqrt(2 * T * np.log(2))))
    rng = np.random.default_rng(0)
    shared = np.mean([np.unique(rng.integers(0, T, n_half)).size < n_half for _ in range(trials)])
    print(f"exercise 3: N = {n_half}: shared start in {shared:.3f} of {trials} trials (predicted 0.5)")
    assert abs(shared - 0.5) < 4 * np.sqrt(0.25 / trials)                                # binomial standard error
    st = start_indices(KEY, 0, np.arange(0, 2 * 2**16, 2), 1, T)
    assert np.unique(st).size == 2**16
    return n_half


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
