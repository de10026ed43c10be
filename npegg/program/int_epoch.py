"""Training and evaluation in int mode: one Q-EGGROLL generation of the int8 EGG model, and bpb.

One generation (``int_epoch``), as nano-egg's training loop runs it::

    raw_p   = Σₜ ll_p,t                  perturbed forward of member p over its T bytes (int32)
    f_i     = sign(raw_2i − raw_2i+1)    one int8 fitness per antithetic pair
    θ       ← θ ± 1 where significant    QEggRoll.do_updates (even threads' noise)

Member states persist across generations (the caller passes them back in), and the reset on
byte 0 happens inside the forward. Nothing here touches floating point except ``bits_per_byte``,
which turns the exact integer sum into a float for reporting.

Mirrors: nano-egg run.py run_evolution (the generate / convert_fitnesses / do_updates step and
the validation pass).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..models.egg import EGG, generate
from ..noiser.qeggroll import QEggRoll


class EpochOut(NamedTuple):
    params: dict            # updated int8 params
    noiser_params: dict     # unchanged by QEggRoll, returned for the functional interface
    states: np.ndarray      # (P, L, H) int8, the members' states after this generation
    raw_scores: np.ndarray  # (P,) int32, Σₜ ll per member (1/16 bit; higher is better)
    fitness: np.ndarray     # (P/2,) int8


def int_epoch(params, frozen_noiser_params, noiser_params, es_tree_key, es_map, tokens, states, epoch: int,
              members=None, noiser=QEggRoll) -> EpochOut:
    """One int-mode generation: population forward, pair fitness, thresholded ±1 update.

    tokens: (P, T+1) uint8 windows (inputs ``[:, :-1]``, targets ``[:, 1:]``; antithetic
    partners 2i, 2i+1 should read the same bytes). states: (P, L, H) int8. members: (P,)
    thread ids, default 0..P−1 (P even).
    """
    tokens = np.asarray(tokens)
    p = tokens.shape[0]
    members = np.arange(p) if members is None else np.asarray(members)
    if p % 2 or members.shape != (p,):
        raise ValueError(f"need an even population with one thread id per row; got {p} rows, members {members.shape}")
    out = generate(noiser, frozen_noiser_params, noiser_params, None, params, es_tree_key, (epoch, members),
                   tokens[:, :-1], tokens[:, 1:], states)
    fitness = noiser.convert_fitnesses(frozen_noiser_params, noiser_params, out.loss_sum)
    iterinfos = (np.full(p, epoch, np.int32), members)
    noiser_params, params = noiser.do_updates(frozen_noiser_params, noiser_params, params, es_tree_key,
                                              fitness, iterinfos, es_map)
    return EpochOut(params, noiser_params, out.final_state, out.loss_sum, fitness)


def total_ll(params, frozen_noiser_params, noiser_params, es_tree_key, stream, n_rows: int = 64,
             noiser=QEggRoll) -> tuple[int, int]:
    """Exact integer log-likelihood of a byte stream under the unperturbed model.

    The stream (N,) uint8 is cut into ``n_rows`` rows of ⌊N / n_rows⌋ bytes (the tail is
    dropped; fewer rows if the stream is short), each read from a zero state, scoring bytes 1..
    of each row from the bytes before it. Returns (Σ ll in 1/16 bit, number of scored bytes).
    """
    stream = np.asarray(stream, dtype=np.uint8)
    n_rows = max(1, min(int(n_rows), len(stream) // 2))
    width = len(stream) // n_rows
    rows = stream[: n_rows * width].reshape(n_rows, width)                      # (B, W) uint8
    state = np.zeros((n_rows,) + EGG.default_state(params).shape, np.int8)      # (B, L, H)
    out = generate(noiser, frozen_noiser_params, noiser_params, None, params, es_tree_key, None,
                   rows[:, :-1], rows[:, 1:], state)
    return int(out.ll.sum(dtype=np.int64)), int(out.ll.size)


def bits_per_byte(params, frozen_noiser_params, noiser_params, es_tree_key, stream, n_rows: int = 64,
                  noiser=QEggRoll) -> float:
    """bpb = −Σ ll / 16 / n_scored_bytes on a byte stream (``total_ll``); lower is better."""
    ll, n = total_ll(params, frozen_noiser_params, noiser_params, es_tree_key, stream, n_rows, noiser)
    return -ll / 16.0 / n
