"""EGG: nano-egg's int8 byte-level language model, with the population as a leading axis.

One step reads a byte per member and updates a per-layer recurrent state (docs/int8-spec.md §3)::

    x₀ = Emb(t)                                         (P, H) int8, value × 16
    for each layer l (parameters stacked on axis 0 under ``blocks/``):
        a  = LN₁(x)                                     integer mean-|x| norm
        s' = GRU(a, s[l])                               nano-egg's gated recurrent cell
        x  = clip(s' + x)                               saturating residual
        x  = clip(MLP(LN₂(x)) + x)                      two matmuls H → 4H → H, no activation
    logits = head(LN_out(x))                            (P, V) int8, probabilities ∝ 2^(logit/16)

The recurrent cell is an MGU-style variant of minGRU with recurrent matrices U_f and U_h (see
``npegg.int8.fixedpoint.egg_gru``): its gate sees the state, so it is *not* the parallel-scan
minGRU of Feng et al. The reference's MLP records ``activation="relu"`` but applies none; neither
do we. Every parameter is int8 and every parameter access goes through the noiser (``QEggRoll``
perturbs, the base ``Noiser``-compatible calls with ``iterinfo=None`` do not).

Leaves (es_map): ``emb`` (V, H) EMB; ``blocks/att/{Wf,Uf,Wh,Uh}`` (L, H, H) MM;
``blocks/att/{bf,bh}``, ``blocks/ln{1,2}/weight`` (L, H) PARAM; ``blocks/mlp/0/weight``
(L, 4H, H) and ``blocks/mlp/1/weight`` (L, H, 4H) MM; ``ln_out/weight`` (H,) PARAM; ``head``
(V, H) MM. ``generate`` is the sequence driver: the state is reset to 0 *before* a step whose
input byte is 0 (a document start), and each step's integer log-likelihood is recorded. It runs the
steps of ``egg_fused.FusedEGG`` (the same integers with the noise gathered once per call) unless
``fused=False``, which steps ``EGG.forward`` itself, the slow twin.

Mirrors: nano-egg run.py (EGG, LayerEGG, EGG_GRU, EGG_LN, MLP, MM, Embedding, generate_thread).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import keys as K
from ..int8.fixedpoint import FIXED_POINT, clipped_add, egg_gru, egg_ln, saturate
from ..int8.intmm import check_tokens
from ..int8.loglik import int_ll, int_ll_columns
from .base_model import check_int
from .common import (EMB_PARAM, MM, MM_PARAM, CommonInit, Embedding, Linear, Model, Parameter, call_submodule,
                     layer_slice, merge_inits, per_member, stack_layers)
from .egg_fused import bind


def int8_normal(key, shape) -> np.ndarray:
    """round_half_even(16 · N(0, 1)) as int8 (value × 16): the reference's weight init.

    The normals come from ``keys.rng_from_key`` (not jax.random.normal); only the scale and the
    rounding match. |16·z| > 127 needs |z| > 7.9, which does not happen; clip anyway.
    """
    z = K.rng_from_key(key).standard_normal(shape)
    return saturate(np.round(z * (1 << FIXED_POINT)))


class MM8(MM):
    """An int8 matmul weight (O, I), value × 16 (the matmul adds the 1/⌊√I⌋)."""

    @classmethod
    def rand_init(cls, key, in_dim, out_dim, *args, **kwargs):
        return CommonInit(None, int8_normal(key, (out_dim, in_dim)), (), MM_PARAM)


class Embedding8(Embedding):
    """An int8 embedding table (V, H), value × 16."""

    @classmethod
    def rand_init(cls, key, vocab, dim, *args, **kwargs):
        return CommonInit(None, int8_normal(key, (vocab, dim)), (), EMB_PARAM)


def int8_constant(value, dim) -> CommonInit:
    """A PARAM leaf (dim,) int8 filled with ``value`` (value × 16 for weights: 16 means 1.0)."""
    return Parameter.rand_init(None, raw_value=np.full(dim, value), dtype="int8")


class EggLN(Model):
    """Integer layer norm with an int8 weight, initialised to 16 (= 1.0). Mirrors: EGG_LN."""

    @classmethod
    def rand_init(cls, key, hidden_dim, *args, **kwargs):
        return merge_inits(weight=int8_constant(1 << FIXED_POINT, hidden_dim))

    @classmethod
    def _forward(cls, cp, x, *args, **kwargs):
        w = per_member(call_submodule(Parameter, "weight", cp), 1, np.ndim(x))   # (H,) or (P, H)
        return egg_ln(x, w)


class EggGRU(Model):
    """nano-egg's gated recurrent cell: Wf, Uf, Wh, Uh (H, H) and biases bf, bh = 0. Mirrors: EGG_GRU."""

    @classmethod
    def rand_init(cls, key, hidden_dim, *args, **kwargs):
        ks = K.split(key, 4)
        return merge_inits(Wf=MM8.rand_init(ks[0], hidden_dim, hidden_dim),
                           Uf=MM8.rand_init(ks[1], hidden_dim, hidden_dim),
                           bf=int8_constant(0, hidden_dim),
                           Wh=MM8.rand_init(ks[2], hidden_dim, hidden_dim),
                           Uh=MM8.rand_init(ks[3], hidden_dim, hidden_dim),
                           bh=int8_constant(0, hidden_dim))

    @classmethod
    def _forward(cls, cp, x, state, *args, **kwargs):
        """x (P, H) int8 value × 16, state (P, H) int8 value × 127 → new state (P, H) int8."""
        bf = per_member(call_submodule(Parameter, "bf", cp), 1, np.ndim(x))
        bh = per_member(call_submodule(Parameter, "bh", cp), 1, np.ndim(x))
        return egg_gru(x, state, lambda name, v: call_submodule(MM, name, cp, v), bf, bh)


class EggMLP(Model):
    """Two int8 matmuls H → 4H → H, no bias and no activation. Mirrors: MLP as EGG uses it."""

    @classmethod
    def rand_init(cls, key, hidden_dim, *args, **kwargs):
        ks = K.split(key, 2)
        return merge_inits(**{"0": merge_inits(weight=MM8.rand_init(ks[0], hidden_dim, 4 * hidden_dim)),
                              "1": merge_inits(weight=MM8.rand_init(ks[1], 4 * hidden_dim, hidden_dim))})

    @classmethod
    def _forward(cls, cp, x, *args, **kwargs):
        h = call_submodule(Linear, "0", cp, x)        # (P, 4H) int8, value × 16
        return call_submodule(Linear, "1", cp, h)     # (P, H) int8, value × 16


class EggLayer(Model):
    """Pre-norm layer: LN → GRU → residual, LN → MLP → residual. Mirrors: LayerEGG."""

    @classmethod
    def rand_init(cls, key, hidden_dim, *args, **kwargs):
        att_key, mlp_key = K.split(key, 2)
        return merge_inits(ln1=EggLN.rand_init(None, hidden_dim), att=EggGRU.rand_init(att_key, hidden_dim),
                           ln2=EggLN.rand_init(None, hidden_dim), mlp=EggMLP.rand_init(mlp_key, hidden_dim))

    @classmethod
    def _forward(cls, cp, x, state, *args, **kwargs):
        """x (P, H) int8 value × 16, state (P, H) → layer output (P, H), new state (P, H)."""
        state = call_submodule(EggGRU, "att", cp, call_submodule(EggLN, "ln1", cp, x), state)
        x = clipped_add(state, x)                                                     # saturating residual
        x = clipped_add(call_submodule(EggMLP, "mlp", cp, call_submodule(EggLN, "ln2", cp, x)), x)
        return x, state


class EGG(Model):
    """The int8 EGG language model, one step: x₀ = Emb(t); per layer x = clip(GRU(LN₁ x, s_l) + x),
    x = clip(MLP(LN₂ x) + x); logits = head(LN_out x), (P, V) int8 with p ∝ 2^(logit/16).
    tokens (P,), state (P, L, H) int8 value × 127. Mirrors: nano-egg run.py EGG."""

    @classmethod
    def rand_init(cls, key, hidden_dim=256, n_layers=1, vocab=256, dtype="int8", *args, **kwargs):
        """Reference init (docs/int8-spec.md §10): weights round(16·N(0,1)), LN weights 16, biases 0.

        Arguments in ``ByteLM.rand_init``'s order (the reference's EGG takes vocab_size, n_layer,
        hidden_dim). Params: emb (V, H), blocks/… stacked (L, …), ln_out/weight (H,), head (V, H),
        all int8. Keys: split(key, 3) → emb, blocks, head; blocks per layer; each layer (att, mlp);
        att 4-way.
        """
        if dtype != "int8":
            raise ValueError(f"EGG is the int8 model; got dtype={dtype!r}")
        hidden_dim, n_layers, vocab = check_int("hidden_dim", hidden_dim), check_int("n_layers", n_layers), \
            check_int("vocab", vocab)
        key_emb, key_blocks, key_head = K.split(key, 3)
        layers = [EggLayer.rand_init(k, hidden_dim) for k in K.split(key_blocks, n_layers)]
        return merge_inits(emb=Embedding8.rand_init(key_emb, vocab, hidden_dim),
                           blocks=stack_layers(layers),
                           ln_out=EggLN.rand_init(None, hidden_dim),
                           head=MM8.rand_init(key_head, hidden_dim, vocab))

    @classmethod
    def init_state(cls, params, batch: int) -> np.ndarray:
        """The zero state stack of ``batch`` rows: (P, L, H) int8, value × 127 (``ByteLM.init_state``'s shape)."""
        return np.zeros((batch,) + np.shape(params["blocks"]["att"]["bh"]), np.int8)

    @classmethod
    def _forward(cls, cp, tokens, state, *args, **kwargs):
        """One step. tokens (P,) ints, state (P, L, H) int8 → logits (P, V) int8, new state (P, L, H)."""
        x = call_submodule(Embedding8, "emb", cp, tokens)                       # (P, H) int8, value × 16
        blocks = cp._replace(frozen_params=None, params=cp.params["blocks"], es_tree_key=cp.es_tree_key["blocks"])
        new_state = np.empty_like(state)                                        # (P, L, H) int8, value × 127
        for layer in range(state.shape[1]):
            x, new_state[:, layer] = EggLayer._forward(layer_slice(blocks, layer), x, state[:, layer])
        logits = call_submodule(MM, "head", cp, call_submodule(EggLN, "ln_out", cp, x))   # (P, V) int8
        return logits, new_state


class SequenceOut(NamedTuple):
    """What ``generate`` returns; ``ll`` / ``loss_sum`` need targets, ``logits`` / ``states`` ``record=True``."""
    ll: np.ndarray | None        # (P, T) int32, log2-likelihood in 1/16 bit
    loss_sum: np.ndarray | None  # (P,) int32, Σ_t ll (the reference's return value, higher is better)
    final_state: np.ndarray      # (P, L, H) int8
    logits: np.ndarray | None    # (P, T, V) int8
    states: np.ndarray | None    # (P, T, L, H) int8, the state after each step
    last_logits: np.ndarray      # (P, V) int8, the logits of the last step


def generate(noiser, frozen_noiser_params, noiser_params, frozen_params, params, es_tree_key, iterinfo,
             tokens_in, tokens_tgt, state, record: bool = False, reset=None, fused: bool = True) -> SequenceOut:
    """Run EGG over byte sequences, one member per row, scoring each next byte: the EGG sequence driver.

    tokens_in: (P, T) uint8; tokens_tgt: (P, T) uint8 (the inputs shifted by one) or None (no
    scoring). state: (P, L, H) int8, value × 127, carried in from the previous call. Before step t,
    the rows where ``reset[:, t]`` is True set their whole state stack to 0; by default
    ``reset = tokens_in == 0`` (a document start). iterinfo: None (plain model) or (epoch, members (P,)).
    fused: step with the noise gathered once (``egg_fused.FusedEGG``, when the noiser offers
    ``lowrank_noise``); False steps through ``EGG.forward``, its slow twin. Both give the same bits.

    Mirrors: nano-egg run.py generate_thread (vmapped over threads).
    """
    tokens_in = check_tokens(tokens_in, np.shape(params["emb"])[0], "tokens_in")      # before any work
    if tokens_tgt is not None:
        tokens_tgt = check_tokens(tokens_tgt, np.shape(params["head"])[0], "tokens_tgt")
    p, t_len = tokens_in.shape
    state = np.asarray(state)
    if state.dtype != np.int8 or state.shape != (p,) + np.shape(params["blocks"]["att"]["bh"]):
        # An int32 state would make the reference's blend stop wrapping back (a different model).
        raise ValueError(f"state must be int8 of shape (P, L, H) = {(p,) + np.shape(params['blocks']['att']['bh'])}, "
                         f"got {state.dtype} {state.shape}")
    reset = tokens_in == 0 if reset is None else np.asarray(reset, dtype=bool)      # (P, T) bool
    ll = None if tokens_tgt is None else np.empty((p, t_len), np.int32)        # (P, T) int32, 1/16 bit
    logits_all = np.empty((p, t_len, np.shape(params["head"])[0]), np.int8) if record else None   # (P, T, V)
    states_all = np.empty((p, t_len) + state.shape[1:], np.int8) if record else None               # (P, T, L, H)
    model = bind(noiser, frozen_noiser_params, noiser_params, params, es_tree_key, iterinfo) if fused else None
    if model is None:
        state, logits = _steps(noiser, frozen_noiser_params, noiser_params, frozen_params, params, es_tree_key,
                               iterinfo, tokens_in, tokens_tgt, state, reset, ll, logits_all, states_all)
    else:
        state, logits = _fused_steps(model, tokens_in, tokens_tgt, state, reset, ll, logits_all, states_all)
    loss_sum = None if ll is None else ll.sum(axis=1, dtype=np.int32)
    return SequenceOut(ll, loss_sum, state, logits_all, states_all, logits)


def _steps(noiser, frozen_noiser_params, noiser_params, frozen_params, params, es_tree_key, iterinfo,
           tokens_in, tokens_tgt, state, reset, ll, logits_all, states_all):
    """``generate``'s loop through ``EGG.forward``; fills ll / logits_all / states_all, returns (state, last logits)."""
    state = state.copy()                                                       # (P, L, H) int8, value × 127
    logits = None
    for t in range(tokens_in.shape[1]):
        state[reset[:, t]] = 0                                                 # document start: reset first
        logits, state = EGG.forward(noiser, frozen_noiser_params, noiser_params, frozen_params, params,
                                    es_tree_key, iterinfo, tokens_in[:, t], state)
        if ll is not None:
            ll[:, t] = int_ll(logits, tokens_tgt[:, t])
        if logits_all is not None:
            logits_all[:, t], states_all[:, t] = logits, state
    return state, logits


def _fused_steps(model, tokens_in, tokens_tgt, state, reset, ll, logits_all, states_all, block: int = 16):
    """``_steps`` with ``FusedEGG.step``, feature-major: the state is one (H, P) array per layer in the
    model's float dtype (exact integers), the logits (V, P); inputs are embedded ``block`` steps at a time."""
    s = [np.ascontiguousarray(state[:, l].T).astype(model.dt) for l in range(state.shape[1])]  # L × (H, P)
    any_reset = reset.any(axis=0)                                              # (T,)
    lp = None
    for start in range(0, tokens_in.shape[1], block):
        x0 = model.embed(tokens_in[:, start:start + block])                    # (τ, H, P) dt, value × 16
        for j, x in enumerate(x0):
            t = start + j
            if any_reset[t]:
                for layer in s:
                    layer[:, reset[:, t]] = 0                                  # document start: reset first
            lp, s = model.step(x, s)                                           # (V, P) logits + 128
            if ll is not None:
                ll[:, t] = int_ll_columns(lp, tokens_tgt[:, t])
            if logits_all is not None:
                logits_all[:, t], states_all[:, t] = (lp - 128).T, np.stack(s, axis=1).T
    # every value is an integer in [−128, 127] (egg_fused's module docstring): the casts are exact
    final = np.stack([layer.T for layer in s], axis=1).astype(np.int8)         # (P, L, H)
    return final, None if lp is None else (lp.T - 128).astype(np.int8)
