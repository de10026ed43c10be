"""Counter-based keys: threefry-2x32, ``fold_in`` and ``split``, bit-compatible with JAX.

npegg never uses a global random stream. Every random quantity is a pure function of a
*key*, a pair of uint32 words, exactly as in JAX. We re-implement JAX's default PRNG,
threefry-2x32 (20 rounds), so that a key tree built here equals, word for word, the one
the reference builds with ``jax.random``; the parity vectors record those words.

Algorithm (all arithmetic mod 2³², ``rotl`` = rotate left)::

    threefry2x32((k0, k1), (x0, x1)):
        k2 = k0 ⊕ k1 ⊕ 0x1BD11BDA;  ks = (k0, k1, k2)
        x0 += k0;  x1 += k1
        for i in 0..4:
            for rot in (R0 if i even else R1):    R0 = (13, 15, 26, 6), R1 = (17, 29, 16, 24)
                x0 += x1;  x1 = rotl(x1, rot) ⊕ x0
            x0 += ks[(i+1) % 3];  x1 += ks[(i+2) % 3] + i + 1
        return (x0, x1)

    key(seed)        = (0, seed)                     (seed < 2³²)
    fold_in(key, d)  = threefry2x32(key, (0, d))
    split(key, n)[i] = fold_in(key, i)               (jax_threefry_partitionable=True)

Everything here is vectorized: ``fold_in`` accepts an array of data words and returns
one key per word, shape (..., 2) uint32.

Mirrors: jax.random.key, jax.random.fold_in, jax.random.split (threefry2x32, partitionable).
"""
from __future__ import annotations

import numpy as np

_ROT = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(key, x0, x1) -> tuple[np.ndarray, np.ndarray]:
    """Threefry-2x32 block cipher, 20 rounds. key (2,) uint32; x0, x1 broadcastable uint32."""
    key = np.asarray(key, dtype=np.uint32)
    k0, k1 = key[..., 0], key[..., 1]
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    with np.errstate(over="ignore"):
        x0 = np.asarray(x0, dtype=np.uint32) + k0
        x1 = np.asarray(x1, dtype=np.uint32) + k1
        for i in range(5):
            for rot in _ROT[i % 2]:
                x0 = x0 + x1
                x1 = _rotl(x1, rot) ^ x0
            x0 = x0 + ks[(i + 1) % 3]
            x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def key(seed: int) -> np.ndarray:
    """The raw key data of ``jax.random.key(seed)``: (0, seed) as uint32 (2,)."""
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed}")
    return np.array([0, seed], dtype=np.uint32)


def fold_in(key_data, data) -> np.ndarray:
    """``jax.random.fold_in``: key (2,) uint32, data int or array → key(s) (..., 2) uint32."""
    data = np.asarray(data).astype(np.uint32)
    y0, y1 = threefry2x32(key_data, np.zeros_like(data), data)
    return np.stack([y0, y1], axis=-1)


def split(key_data, n: int) -> np.ndarray:
    """``jax.random.split(key, n)`` (partitionable threefry): (n, 2) uint32."""
    return fold_in(key_data, np.arange(n, dtype=np.uint32))


def rng_from_key(key_data) -> np.random.Generator:
    """A NumPy Generator whose stream is a pure function of the key (Philox keyed by both words).

    Used for initialisation only; noise never comes from a stream (see ``npegg.noise``).
    """
    k = np.asarray(key_data, dtype=np.uint32)
    return np.random.Generator(np.random.Philox(key=(int(k[0]) << 32) | int(k[1])))
