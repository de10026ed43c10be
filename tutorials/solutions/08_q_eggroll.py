"""Solutions to the exercises of chapter 8 (run by tests/test_tutorials.py; each one checks itself)."""
import math

import numpy as np

from npegg import keys as K
from npegg.int8 import fixedpoint as fp
from npegg.int8 import qes
from npegg.noise import Int8NoiseTable
from npegg.noiser.qeggroll import get_lora_update_params


def exercise_1():
    """An entry of A Bᵀ has std ≈ 16·16 = 2⁸, so ⌊A Bᵀ / 2^(4+s)⌋ has std ≈ 2^(4−s) stored units, until
    the floor's rounding (uniform, std ≈ 0.29, plus its mean shift) is as large as that: s ≥ 5."""
    table = Int8NoiseTable(seed=0, log2_size=22)
    A, B = get_lora_update_params({"noise": table, "rank": 1, "noise_reuse": 1}, (3, np.arange(64)), (64, 48),
                                  K.fold_in(K.key(0), 7))
    stds = {}
    for s in range(7):
        dW = fp.floor_shift(np.einsum("par,pbr->pab", A.astype(np.int32), B.astype(np.int32)), 4 + s)
        stds[s] = float(dW.std())
        print(f"exercise 1: sigma_shift {s}: std {stds[s]:7.3f} stored units, 2^(4-s) = {2.0 ** (4 - s):7.3f}")
    for s in range(4):
        assert abs(stds[s] / 2.0 ** (4 - s) - 1) < 0.15
    assert 0.3 < stds[6] < 0.7                                 # half a unit, whatever 2^(4-6) = 0.25 says
    return stds


def exercise_2():
    rng = np.random.default_rng(0)
    R = rng.integers(-2000, 0, 64).astype(np.float64)
    R[10] = R[11]                                              # a tie inside pair 5
    base = qes.fitness_sign(R)
    for h in (lambda r: np.exp(r / 100), lambda r: r**3):
        assert np.array_equal(qes.fitness_sign(h(R)), base)
    print(f"exercise 2: invariant under exp and cube; a tie gives {base[5]}")
    assert base[5] == 0
    return base


def exercise_3():
    """α_e = 1/(15 e/1000 + 1) < 0.05 ⇔ e > 19·1000/15 = 1266.7: e = 1267; thr = int(16·Φ⁻¹(1 − α_e/2)) = 31."""
    e = math.floor(19 * 1000 / 15) + 1
    a = qes.alpha_schedule(4.0, np.arange(e + 1))
    assert a[e] < 0.05 <= a[e - 1]
    thr = int(qes.update_threshold(a[e]))
    print(f"exercise 3: alpha_e < 0.05 from epoch {e} (alpha_e = {a[e]:.5f}), thr = {thr}")
    assert thr == 31
    return e, thr


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
