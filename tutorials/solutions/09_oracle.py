"""Solutions to the exercises of chapter 9 (run by tests/test_tutorials.py; each one checks itself)."""
import io

import numpy as np

from npegg.int8 import intmm


def exercise_1():
    a = np.arange(-7, 8, dtype=np.int8).reshape(3, 5)
    header = "{'descr': '|i1', 'fortran_order': False, 'shape': (3, 5), }"
    total = 10 + len(header) + 1                                     # magic+version+length, header, newline
    header = header + " " * (-total % 64) + "\n"                     # pad so the data starts at a multiple of 64
    buf = b"\x93NUMPY" + bytes([1, 0]) + len(header).to_bytes(2, "little") + header.encode("latin1") + a.tobytes()
    back = np.load(io.BytesIO(buf))
    print(f"exercise 1: {len(buf)} bytes, data at offset {10 + len(header)}; np.load reads it back: "
          f"{np.array_equal(back, a) and back.dtype == a.dtype}")
    assert (10 + len(header)) % 64 == 0 and np.array_equal(back, a) and back.dtype == np.int8
    return buf


def exercise_2(K=4096):
    """Forward and pairwise sums differ by a few float32 ulps of the partial sums: ~1e-7..1e-6 relative, far
    inside rtol = 2e-5. Integer sums are associative: every order gives the same int64 result."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(K).astype(np.float32), rng.standard_normal(K).astype(np.float32)
    prods = x * y
    fwd = np.float32(0)
    for v in prods:                                                  # left to right, float32
        fwd = np.float32(fwd + v)
    pair = prods.copy()
    while pair.size > 1:                                             # pairwise tree, float32
        pair = (pair[0::2] + pair[1::2]).astype(np.float32)
    rel = abs(float(fwd) - float(pair[0])) / np.abs(prods).sum()
    print(f"exercise 2: forward {float(fwd):.6f}, pairwise {float(pair[0]):.6f}, difference / sum|terms| = {rel:.1e}")
    assert 0 < rel < 2e-5
    xi, yi = rng.integers(-127, 128, K), rng.integers(-127, 128, K)
    assert int(np.sum(xi * yi)) == int(np.sum((xi * yi)[::-1])) == int(np.dot(xi, yi))
    return rel


def exercise_3():
    """Round to nearest instead of floor changes every accumulator whose remainder is ≥ half the divisor:
    about half of the outputs that the clip does not decide. Any golden vector of a forward pass catches it."""
    rng = np.random.default_rng(1)
    W = rng.integers(-127, 128, (64, 64)).astype(np.int8)
    x = rng.integers(-127, 128, (32, 64)).astype(np.int8)
    acc = x.astype(np.int64) @ W.T.astype(np.int64)
    d = intmm.mm_divisor(64)
    good = intmm.do_mm(W, x)
    bad = np.clip(np.floor(acc / d + 0.5), -127, 127).astype(np.int8)
    assert np.array_equal(good, np.clip(acc // d, -127, 127).astype(np.int8))   # the floor, as do_mm does
    frac = np.mean(good != bad)
    inside = np.abs(acc / d) < 126                               # outputs the clip does not decide
    frac_inside = np.mean((good != bad)[inside])
    print(f"exercise 3: rounding to nearest changes {frac:.1%} of the outputs ({frac_inside:.1%} of those "
          f"inside the clip); the vectors fail at once")
    assert frac > 0 and 0.4 < frac_inside < 0.6
    return frac


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
