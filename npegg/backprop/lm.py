"""ByteLM's loss and its exact gradient by backprop through time, written by hand in NumPy.

The model is ``npegg.models.lm.ByteLM`` with the same parameter tree (so ES and backprop train,
save and sample the same thing)::

    x₀ = emb[token]                                                (B, T, D)
    per layer l:  x ← x + cell(LN₁(x), s_l)                        (``npegg.backprop.cells``)
                  x ← x + W₁ gelu(W₀ LN₂(x) + b₀) + b₁            (no MLP branch when mlp_ratio = 0)
    logits = head · LN_out(x) [+ direct[token]]                    (B, T, V)
    ℓ = −(1/(B·T)) Σ log softmax(logits)[target]                   nats per byte

``loss_and_grad`` runs the forward keeping what the backward needs, then the backward in reverse
order: the head, LN_out, and per layer (last first) the MLP branch, LN₂, the cell, LN₁, each
residual adding its branch's dx to the stream's gradient; finally the embedding rows gather
dx₀ (``np.add.at``, since a byte may occur many times). The state that enters a chunk is a
constant (truncated BPTT); the returned state is the one to pass to the next chunk.

``train_step`` is one optimizer step with any ``npegg.optim`` optimizer: the gradient is what
the optimizer minimises directly (no sign flip, unlike ES's G, which is minus a fitness ascent).
"""
from __future__ import annotations

import numpy as np

from .. import optim
from .cells import CELL_PASSES
from .layers import (gelu_bwd, gelu_fwd, layer_norm_bwd, layer_norm_fwd, linear_bwd, linear_fwd, nll_bwd,
                     nll_fwd)


def _layer(params: dict, l: int) -> dict:
    """The parameters of layer l: every leaf of ``blocks`` indexed at l."""
    def pick(tree):
        return {k: pick(v) if isinstance(v, dict) else v[l] for k, v in tree.items()}
    return pick(params["blocks"])


def forward_cache(frozen_params: dict, params: dict, tokens, state, reset=None):
    """The forward of ``loss_and_grad`` up to LN_out: (h (B, T, D), new state (B, L, D), caches)."""
    tokens = np.asarray(tokens)
    if reset is None:
        reset = tokens == 0
    keep = (~reset).astype(params["head"].dtype) if reset.any() else None     # (B, T) or None
    cell_fwd, _ = CELL_PASSES[frozen_params["cell"]]
    x = params["emb"][tokens]                                                 # (B, T, D)
    new_state = np.empty_like(state)
    layers = []
    for l in range(frozen_params["n_layers"]):
        lp = _layer(params, l)
        a, c_ln1 = layer_norm_fwd(x, lp["ln1"]["weight"], lp["ln1"]["bias"])
        y, c_cell = cell_fwd(lp["att"], a, state[:, l], keep)
        new_state[:, l] = y[:, -1]
        x = x + y
        if "mlp" not in lp:                                                   # mlp_ratio 0: the cell alone
            layers.append((c_ln1, c_cell, None, None, None, None))
            continue
        m, c_ln2 = layer_norm_fwd(x, lp["ln2"]["weight"], lp["ln2"]["bias"])
        u, _ = linear_fwd(m, lp["mlp"]["0"]["weight"], lp["mlp"]["0"]["bias"])  # (B, T, mD)
        g, c_gelu = gelu_fwd(u)
        x = x + linear_fwd(g, lp["mlp"]["1"]["weight"], lp["mlp"]["1"]["bias"])[0]
        layers.append((c_ln1, c_cell, c_ln2, m, c_gelu, g))
    h, c_out = layer_norm_fwd(x, params["ln_out"]["weight"], params["ln_out"]["bias"])
    return h, new_state, (tokens, layers, c_out)


def loss(frozen_params: dict, params: dict, tokens, targets, state, reset=None) -> float:
    """ℓ = −(1/(B·T)) Σ log softmax(logits)[target] in nats per byte, without the backward.
    tokens, targets (B, T) bytes; state (B, L, D); reset (B, T) bool or None (tokens == 0)."""
    h, _, _ = forward_cache(frozen_params, params, tokens, state, reset)
    return float(nll_fwd(_logits(params, h, tokens).reshape(-1, params["head"].shape[0]),
                         np.asarray(targets).reshape(-1))[0])


def _logits(params: dict, h, tokens):
    """head · h, plus the direct path's row for each input byte when the model has one: (B, T, V)."""
    logits, _ = linear_fwd(h, params["head"])
    if "direct" in params:
        logits += params["direct"][np.asarray(tokens)]
    return logits


def loss_and_grad(frozen_params: dict, params: dict, tokens, targets, state, reset=None):
    """(ℓ, grads, new_state): ℓ = −(1/(B·T)) Σ log softmax(logits)[target] in nats per byte, dℓ/dθ
    as a tree shaped like ``params`` (backprop through the chunk, the start state held constant).

    tokens, targets (B, T) bytes; state (B, L, D) carried from the previous chunk (zeros to
    start); reset (B, T) bool, default tokens == 0.
    """
    h, new_state, (tokens, layers, c_out) = forward_cache(frozen_params, params, tokens, state, reset)
    V = params["head"].shape[0]
    logits = _logits(params, h, tokens)                                       # (B, T, V)
    value, c_nll = nll_fwd(logits.reshape(-1, V), np.asarray(targets).reshape(-1))
    dlogits = nll_bwd(c_nll).reshape(logits.shape)
    dh, d_head, _ = linear_bwd(dlogits, h, params["head"])
    dx, dw, db = layer_norm_bwd(dh, c_out)
    grads = {"head": d_head, "ln_out": {"weight": dw, "bias": db}}
    if "direct" in params:                                                  # rows gather dlogits, as emb below
        grads["direct"] = np.zeros_like(params["direct"])
        np.add.at(grads["direct"], tokens.reshape(-1), dlogits.reshape(-1, V))

    _, cell_bwd = CELL_PASSES[frozen_params["cell"]]
    per_layer = [None] * len(layers)
    for l in range(len(layers) - 1, -1, -1):
        lp = _layer(params, l)
        c_ln1, c_cell, c_ln2, m, c_gelu, g = layers[l]
        per_layer[l] = {}
        if c_ln2 is not None:
            dg, dW1, db1 = linear_bwd(dx, g, lp["mlp"]["1"]["weight"])      # MLP branch
            dm, dW0, db0 = linear_bwd(gelu_bwd(dg, c_gelu), m, lp["mlp"]["0"]["weight"])
            dx_branch, dw2, db2 = layer_norm_bwd(dm, c_ln2)
            dx = dx + dx_branch                                              # residual
            per_layer[l] = {"ln2": {"weight": dw2, "bias": db2},
                            "mlp": {"0": {"weight": dW0, "bias": db0}, "1": {"weight": dW1, "bias": db1}}}
        da, d_att = cell_bwd(lp["att"], dx, c_cell)                          # cell branch
        dx_branch, dw1, db1_ln = layer_norm_bwd(da, c_ln1)
        dx = dx + dx_branch
        per_layer[l].update({"ln1": {"weight": dw1, "bias": db1_ln}, "att": d_att})
    grads["blocks"] = _stack(per_layer)
    d_emb = np.zeros_like(params["emb"])
    np.add.at(d_emb, tokens.reshape(-1), dx.reshape(-1, dx.shape[-1]))
    grads["emb"] = d_emb
    return float(value), grads, new_state


def _stack(trees: list) -> dict:
    """Per-layer gradient trees → one tree with leaves stacked on axis 0 (as ``blocks``)."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: _stack([t[k] for t in trees]) for k in first}
    return np.stack(trees)


def train_step(optimizer: optim.GradientTransformation, frozen_params, params, opt_state, tokens, targets, state,
               reset=None):
    """One step of ``optimizer`` on ℓ: → (params, opt_state, new_state, ℓ before the step)."""
    value, grads, new_state = loss_and_grad(frozen_params, params, tokens, targets, state, reset)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optim.apply_updates(params, updates), opt_state, new_state, value
