"""Honest bits-per-byte baselines, measured on the same validation bytes a model is scored on.

A number means something only next to what simple methods get on the same bytes. Each baseline
here scores *every* validation byte, the 0 document separators included, and the count models
are fitted on the training bytes only:

- uniform: log₂ 256 = 8 bits for every byte;
- unigram, add-α: p(b) = (c_b + α) / (N_train + 256α);
- bigram, add-α: p(b | a) = (c_ab + α) / (c_a· + 256α), c_a· = Σ_b c_ab, counted over the
  N_train − 1 adjacent pairs of the training bytes. The first validation byte is conditioned on
  the last training byte: that is the byte which precedes it in the corpus stream;
- gzip and lzma: 8 · len(compress(valid)) / N_valid, at their maximum settings (zlib level 9, the
  deflate that ``gzip -9`` uses, in the zlib container; lzma preset 9 | PRESET_EXTREME in the xz
  container, as ``xz -9e``). They see only the validation bytes, nothing of training.

bpb = −(1/N_valid) Σₜ log₂ p(xₜ | …). On ``../shared/data/minipile_valid_1000.npy`` with its
README split these give 8, 5.137, 4.111, 2.551 and 2.249, the README's table.
"""
from __future__ import annotations

import lzma
import zlib

import numpy as np

NAMES = {
    "uniform": "uniform, log2(256)",
    "unigram": "unigram, add-one",
    "bigram": "bigram, add-one",
    "gzip": "gzip -9 (zlib)",
    "lzma": "lzma / xz -9e",
}


def _bytes(x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype != np.uint8 or a.ndim != 1:
        raise ValueError(f"expected a 1-D uint8 byte array, got {a.dtype} of shape {a.shape}")
    return a


def uniform_bpb(valid: np.ndarray) -> float:
    """log₂ 256 = 8: every byte equally likely."""
    _bytes(valid)
    return 8.0


def unigram_bpb(train: np.ndarray, valid: np.ndarray, alpha: float = 1.0) -> float:
    """Unigram add-α: −mean log₂ (c_{xₜ} + α) / (N_train + 256α). train (N_t,), valid (N_v,) uint8."""
    train, valid = _bytes(train), _bytes(valid)
    counts = np.bincount(train, minlength=256).astype(np.float64)                      # (256,)
    log_p = np.log2(counts + alpha) - np.log2(len(train) + 256 * alpha)               # (256,)
    return float(-log_p[valid].mean())


def bigram_bpb(train: np.ndarray, valid: np.ndarray, alpha: float = 1.0) -> float:
    """Bigram add-α: −mean log₂ (c_{x₍ₜ₋₁₎xₜ} + α) / (c_{x₍ₜ₋₁₎·} + 256α).

    Counts c_ab are the adjacent pairs of ``train``; x₋₁ (before valid[0]) is train[-1].
    train (N_t,), valid (N_v,) uint8.
    """
    train, valid = _bytes(train), _bytes(valid)
    pairs = train[:-1].astype(np.int64) * 256 + train[1:]                               # (N_t − 1,)
    counts = np.bincount(pairs, minlength=256 * 256).reshape(256, 256).astype(np.float64)  # (256, 256) [a, b]
    log_p = np.log2(counts + alpha) - np.log2(counts.sum(axis=1, keepdims=True) + 256 * alpha)
    prev = np.concatenate([train[-1:], valid[:-1]])                                    # (N_v,) x₍ₜ₋₁₎
    return float(-log_p[prev, valid].mean())


def gzip_bpb(valid: np.ndarray) -> float:
    """8 · len(zlib.compress(valid, level=9)) / N_valid."""
    data = _bytes(valid).tobytes()
    return 8.0 * len(zlib.compress(data, 9)) / len(data)


def lzma_bpb(valid: np.ndarray) -> float:
    """8 · len(lzma.compress(valid, preset=9 | PRESET_EXTREME)) / N_valid (xz container)."""
    data = _bytes(valid).tobytes()
    return 8.0 * len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME)) / len(data)


def baselines(train: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """All five baselines on the validation bytes, in ``NAMES`` order: {key: bpb}; lzma dominates the cost."""
    if len(train) < 2 or len(valid) < 1:
        raise ValueError(f"need ≥ 2 training and ≥ 1 validation bytes, got {len(train)} and {len(valid)}")
    return {
        "uniform": uniform_bpb(valid),
        "unigram": unigram_bpb(train, valid),
        "bigram": bigram_bpb(train, valid),
        "gzip": gzip_bpb(valid),
        "lzma": lzma_bpb(valid),
    }
