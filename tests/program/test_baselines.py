"""Bits-per-byte baselines: hand-computable corpora, a slow twin, and the shared README's table."""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from npegg.program.baselines import baselines, bigram_bpb, gzip_bpb, lzma_bpb, unigram_bpb, uniform_bpb
from npegg.program.data import load_corpus

MINIPILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "minipile_valid_1000.npy"


def u8(seq) -> np.ndarray:
    return np.array(seq, dtype=np.uint8)


def test_constant_stream_unigram_is_add_one_by_hand():
    """Entropy 0, so add-one pays only for the 255 unseen symbols: −log₂((n+1)/(n+256))."""
    n, m = 1000, 50
    assert unigram_bpb(u8([7] * n), u8([7] * m)) == pytest.approx(-math.log2((n + 1) / (n + 256)), rel=1e-12)


def test_constant_stream_bigram_is_add_one_by_hand():
    """n−1 pairs (7, 7): p(7 | 7) = n / (n + 255)."""
    n = 1000
    assert bigram_bpb(u8([7] * n), u8([7] * 40)) == pytest.approx(-math.log2(n / (n + 255)), rel=1e-12)


def test_alternating_stream_bigram_by_hand_and_near_zero():
    """train = (0 1)ᵏ: c₀₁ = k, c₁₀ = k − 1. valid = (0 1)ʲ, its first 0 follows train's last 1."""
    k, j = 5000, 100
    got = bigram_bpb(u8([0, 1] * k), u8([0, 1] * j))
    p_0_after_1 = (k - 1 + 1) / (k - 1 + 256)
    p_1_after_0 = (k + 1) / (k + 256)
    assert got == pytest.approx(-(math.log2(p_0_after_1) + math.log2(p_1_after_0)) / 2, rel=1e-12)
    assert got < 0.11 and unigram_bpb(u8([0, 1] * k), u8([0, 1] * j)) > 0.99   # unigram needs ≈ 1 bit


def test_first_valid_byte_conditions_on_last_training_byte():
    train = u8([3, 5, 3, 5, 3])                            # pairs: (3,5)×2, (5,3)×2
    assert bigram_bpb(train, u8([5])) == pytest.approx(-math.log2((2 + 1) / (2 + 256)), rel=1e-12)


def test_uniform_random_bytes_give_unigram_near_8():
    """Add-one on 2²⁰ uniform bytes: counts ≈ 4096 ± 64, so log₂ p̂ is within ≈ 0.02 of −8 per symbol."""
    rng = np.random.default_rng(0)
    train, valid = rng.integers(0, 256, 2**20, dtype=np.uint8), rng.integers(0, 256, 2**16, dtype=np.uint8)
    assert abs(unigram_bpb(train, valid) - 8.0) < 0.01
    assert uniform_bpb(valid) == 8.0


def test_compressors_bracket_the_extremes():
    rng = np.random.default_rng(1)
    noise, flat = rng.integers(0, 256, 50_000, dtype=np.uint8), u8([65] * 50_000)
    assert gzip_bpb(noise) > 8.0 and lzma_bpb(noise) > 8.0      # incompressible: the container costs bits
    assert gzip_bpb(flat) < 0.05 and lzma_bpb(flat) < 0.05


@settings(max_examples=25, deadline=None)
@given(train=st.binary(min_size=2, max_size=300), valid=st.binary(min_size=1, max_size=100))
def test_bigram_equals_per_byte_loop(train, valid):
    """Slow twin: count pairs in a Counter and score one byte at a time."""
    pairs, firsts = Counter(zip(train, train[1:])), Counter(train[:-1])
    prev = [train[-1]] + list(valid[:-1])
    slow = -sum(math.log2((pairs[a, b] + 1) / (firsts[a] + 256)) for a, b in zip(prev, valid)) / len(valid)
    assert bigram_bpb(u8(list(train)), u8(list(valid))) == pytest.approx(slow, rel=1e-9)


def test_rejects_non_byte_arrays():
    with pytest.raises(ValueError, match="uint8"):
        unigram_bpb(np.arange(10), u8([1, 2]))


@pytest.mark.skipif(not MINIPILE.is_file(), reason=f"{MINIPILE} not present (../shared/data is not in a fresh clone)")
def test_minipile_reproduces_shared_readme_table():
    """../shared/data/README.md: unigram 5.137, bigram 4.111, gzip 2.551, xz 2.249 on split-valid."""
    c = load_corpus(MINIPILE)
    got = {k: round(v, 3) for k, v in baselines(c.train, c.valid).items()}
    assert got == {"uniform": 8.0, "unigram": 5.137, "bigram": 4.111, "gzip": 2.551, "lzma": 2.249}
