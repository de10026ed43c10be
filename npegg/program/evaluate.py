"""Bits per byte of a whole byte stream under a plain model, fast; and sampling text from it.

**What is scored.** Every byte of the stream, the 0 document separators included, each predicted
from the bytes before it, as the baselines in ``npegg.program.baselines`` score it. The first byte of a
validation split is predicted from the last training byte (``context``), the byte that precedes
it in the corpus; the model's state before that one byte is zero.

    bpb = −(1/N) Σₜ log₂ p(xₜ | x₍<t₎)

**How, fast.** Running one sequence byte by byte would take N steps of a small batch. Instead the
stream is cut into *pieces* and the pieces are packed into K parallel *lanes* of about N/K steps,
run as one batch of K with the state carried from time chunk to time chunk:

- Every document (it starts with byte 0, where the model resets its state anyway) is a piece.
  Starting a lane at a document start with a zero state is therefore *exact*.
- A document longer than the lane length N/K is cut into pieces of that length. A piece that
  starts inside a document is the only approximation: instead of the document's whole history,
  its state is warmed up on the ``warmup`` bytes before the cut (run, not scored; default 256),
  starting from zero. ``Lanes.n_cut`` counts these cuts and ``Lanes.describe`` says so.
- Pieces go to lanes longest-first, each into the emptiest lane (LPT), so lanes are about
  equally long; the tail of a shorter lane is padding, never scored.

With one lane and no cuts this is the exact sequential evaluation; a test checks that the lanes
give the same bpb when no document is cut. On trained models the warm-up approximation changes
the bpb only in the fifth decimal or below (measurements: ``benchmarks/lm_tuning_record.md``).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import keys as K

LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class Lanes:
    """A stream laid out as K lanes: every array is (K, T); ``score`` marks the N scored bytes."""
    inputs: np.ndarray     # (K, T) uint8, the byte fed at each step
    targets: np.ndarray    # (K, T) uint8, the byte to predict
    reset: np.ndarray      # (K, T) bool, state reset before the step (document and piece starts)
    score: np.ndarray      # (K, T) bool, counted in the bpb (False on warm-up and padding)
    n_scored: int
    n_cut: int             # pieces that start inside a document (warm-up approximation)
    warmup: int

    def describe(self) -> str:
        """One line: how many bytes in how many lanes, and whether the layout is exact."""
        k, t = self.inputs.shape
        how = ("exact" if self.n_cut == 0 else
               f"{self.n_cut} long-document cuts warmed up on {self.warmup} bytes each")
        return f"{self.n_scored:,} bytes in {k} lanes of {t:,} steps ({how})"


def plan_lanes(stream: np.ndarray, n_lanes: int = 128, warmup: int = 256, context: int | None = None) -> Lanes:
    """Lay out ``stream`` (N,) uint8 for scoring as K = ``n_lanes`` lanes of T ≈ ⌈N/K⌉ (+ warm-up) steps.

    Pieces: every document (starting at a byte 0) is a piece, cut into pieces of ≤ ⌈N/K⌉ bytes;
    a piece cut inside a document first runs ``warmup`` unscored bytes before the cut. Pieces go
    longest first into the least-loaded lane (LPT). Scored: every byte xₜ predicted from x₍<t₎ —
    N bytes with ``context`` (the byte before ``stream[0]``, e.g. the last training byte), N − 1
    (bytes 1..N−1) with None. Returns ``Lanes`` of (K, T) arrays; n_lanes ≥ 1, warmup ≥ 0.
    """
    stream = np.asarray(stream, dtype=np.uint8)
    seq = stream if context is None else np.concatenate([np.array([context], np.uint8), stream])
    inputs, targets = seq[:-1], seq[1:]                                       # (N,) each
    n = len(inputs)
    if n < 1:
        raise ValueError("need at least one byte to score")
    n_lanes = max(1, min(int(n_lanes), n))
    piece_len = -(-n // n_lanes)                                              # ⌈N / K⌉
    starts = np.union1d([0], np.flatnonzero(inputs == 0))
    ends = np.append(starts[1:], n)
    pieces, n_cut = [], 0                                                     # (run_from, score_from, end)
    for s, e in zip(starts.tolist(), ends.tolist()):
        for c in range(s, e, piece_len):
            pieces.append((c if c == s else max(s, c - warmup), c, min(c + piece_len, e)))
            n_cut += c != s
    lanes = [[] for _ in range(n_lanes)]
    heap = [(0, k) for k in range(n_lanes)]                                   # (load, lane)
    for piece in sorted(pieces, key=lambda p: p[0] - p[2]):                   # longest first
        load, k = heapq.heappop(heap)
        lanes[k].append(piece)
        heapq.heappush(heap, (load + piece[2] - piece[0], k))
    T = max(load for load, _ in heap)
    out_in = np.zeros((n_lanes, T), np.uint8)
    out_tg = np.zeros((n_lanes, T), np.uint8)
    reset = np.ones((n_lanes, T), bool)                                       # padding resets too
    score = np.zeros((n_lanes, T), bool)
    for k, lane in enumerate(lanes):
        t = 0
        for run_from, score_from, end in sorted(lane):
            m = end - run_from
            out_in[k, t:t + m] = inputs[run_from:end]
            out_tg[k, t:t + m] = targets[run_from:end]
            reset[k, t + 1:t + m] = inputs[run_from + 1:end] == 0
            score[k, t + score_from - run_from:t + m] = True
            t += m
    return Lanes(out_in, out_tg, reset, score, int(score.sum()), n_cut, int(warmup))


def row_lanes(stream: np.ndarray, n_rows: int = 64) -> Lanes:
    """A quick layout: ``stream`` (N,) uint8 cut into B = ``n_rows`` rows of W = ⌊N/B⌋ bytes.

    Each row is read from a zero state and bytes 1..W−1 of it are scored, so every row starts
    without context: cheaper than ``plan_lanes`` (no warm-up) and pessimistic by the context it
    drops. The tail N − B·W is dropped; B shrinks to ⌊N/2⌋ for short streams. Lanes (B, W−1).
    """
    stream = np.asarray(stream, dtype=np.uint8)
    n_rows = max(1, min(int(n_rows), len(stream) // 2))
    width = len(stream) // n_rows
    rows = stream[: n_rows * width].reshape(n_rows, width)                    # (B, W) uint8
    inputs, targets = rows[:, :-1].copy(), rows[:, 1:].copy()                 # (B, W−1) each
    reset = inputs == 0                                                       # document starts
    reset[:, 0] = True                                                        # every row from zero
    score = np.ones(inputs.shape, bool)
    return Lanes(inputs, targets, reset, score, int(score.size), int(np.sum(rows[1:, 0] != 0)), 0)


def lanes_log_likelihood(step: Callable, lanes: Lanes, state: np.ndarray, time_chunk: int = 256) -> float:
    """Σ log p(target) over the scored bytes, in the unit of ``step``'s log-likelihoods.

    step(inputs (K, t), state, reset (K, t), targets (K, t)) → (log p (K, t), state) runs the plain
    model on one time chunk; ``state`` is its zero state for K rows. The sum is in float64.
    """
    total = 0.0
    T = lanes.inputs.shape[1]
    for lo in range(0, T, time_chunk):
        sl = slice(lo, lo + time_chunk)
        ll, state = step(lanes.inputs[:, sl], state, lanes.reset[:, sl], lanes.targets[:, sl])
        total += float(ll[lanes.score[:, sl]].sum(dtype=np.float64))
    return total


def lanes_bpb(step: Callable, lanes: Lanes, state: np.ndarray, time_chunk: int = 256,
              nats_per_unit: float = 1.0) -> float:
    """bits per byte = −u · Σ log p / (N ln 2) over the N scored bytes (``lanes_log_likelihood``).

    The one bpb of npegg, float and int mode alike. u = ``nats_per_unit``: 1 when ``step``
    returns natural-log likelihoods, ln 2 / 16 for the int8 model's 1/16-bit integers.
    """
    return -lanes_log_likelihood(step, lanes, state, time_chunk) * nats_per_unit / (lanes.n_scored * LN2)


def sample_bytes(logits_fn: Callable, prompt: bytes, length: int, temperature: float = 1.0,
                 seed: int = 0) -> bytes:
    """Continue ``prompt`` by ``length`` bytes, sampling at ``temperature`` (0: always the likeliest).

    logits_fn(tokens (1, t) uint8, state or None) → (logits (1, t, V), state) runs the plain model;
    the prompt is fed after a document-start byte 0. Randomness comes from
    ``keys.rng_from_key(key(seed))``, never from a global stream. Returns the new bytes only.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    rng = K.rng_from_key(K.key(seed))
    tokens = np.frombuffer(b"\0" + bytes(prompt), dtype=np.uint8)[None]      # (1, t)
    logits, state = logits_fn(tokens, None)
    out = bytearray()
    for _ in range(int(length)):
        z = logits[0, -1].astype(np.float64)                                  # (V,)
        if temperature == 0:
            nxt = int(np.argmax(z))
        else:
            p = np.exp((z - z.max()) / temperature)
            nxt = int(rng.choice(len(p), p=p / p.sum()))
        out.append(nxt)
        logits, state = logits_fn(np.array([[nxt]], np.uint8), state)
    return bytes(out)
