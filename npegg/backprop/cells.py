"""Backprop through time for ByteLM's two recurrent cells, gradients by hand.

Both cells map inputs x (B, T, D) and a start state s₀ (B, D) to outputs h (B, T, D) whose last
row is the next chunk's state. ``keep`` (B, T) is 0 where the state resets before step t (a
document start) and 1 elsewhere. Gradients stop at s₀ (truncated BPTT: a chunk's start state is
a constant, as in ES, which also only carries the state forward).

**minGRU** (``npegg.models.mingru``): z = σ(W_z x + b_z), h̃ = W_h x + b_h, and with a = (1 − z)⊙keep,
b = z ⊙ h̃ the linear recurrence h_t = a_t ⊙ h_{t−1} + b_t. Its adjoint is the same recurrence
run backwards: with g_t = dℓ/dh_t in total (from the output and from step t + 1)::

    g_t = dy_t + a_{t+1} ⊙ g_{t+1}             a reversed linear recurrence (``linear_scan_loop``)
    da_t = g_t ⊙ h_{t−1},   db_t = g_t
    dz = −da ⊙ keep + db ⊙ h̃,   dh̃ = db ⊙ z,   du_z = dz ⊙ z(1 − z)

**egg cell** (``npegg.models.lm.EggCell``), with s the state after the reset::

    f = σ(W_f x + U_f s + b_f),  c = tanh(W_h x + U_h (f ⊙ s) + b_h),  s' = (1 − f) ⊙ s + f ⊙ c

backwards one step at a time, with dŝ the total gradient of s'::

    dc = dŝ ⊙ f,  dv_c = dc ⊙ (1 − c²),  d(f⊙s) = dv_c U_h,  df = dŝ ⊙ (c − s) + d(f⊙s) ⊙ s
    dv_f = df ⊙ f(1 − f),  ds = dŝ ⊙ (1 − f) + d(f⊙s) ⊙ f + dv_f U_f,   then ds ← ds ⊙ keep_t
    dU_h += dv_cᵀ (f⊙s),  dU_f += dv_fᵀ s

The input projections W x + b of every step are one matmul each, forward and backward.
"""
from __future__ import annotations

import numpy as np

from ..models.mingru import linear_scan_loop
from .layers import linear_bwd, linear_fwd, sigmoid


def mingru_fwd(p, x, s0, keep=None):
    """p = {Wz, bz, Wh, bh}; x (B, T, D), s0 (B, D), keep (B, T) or None → (h (B, T, D), cache)."""
    z = sigmoid(linear_fwd(x, p["Wz"], p["bz"])[0])                         # (B, T, D)
    h_tilde = linear_fwd(x, p["Wh"], p["bh"])[0]                           # (B, T, D)
    a = 1.0 - z
    if keep is not None:
        a *= keep[..., None]
    h = linear_scan_loop(a, z * h_tilde, s0)                               # (B, T, D)
    return h, (x, s0, keep, z, h_tilde, a, h)


def mingru_bwd(p, dh, cache):
    """(dx (B, T, D), grads {Wz, bz, Wh, bh}) for ``mingru_fwd``; dh (B, T, D) = dℓ/dh."""
    x, s0, keep, z, h_tilde, a, h = cache
    a_next = np.zeros_like(a)                                              # a_{t+1}, 0 past the end
    a_next[:, :-1] = a[:, 1:]
    g = linear_scan_loop(a_next[:, ::-1], dh[:, ::-1])[:, ::-1]            # (B, T, D) total dℓ/dh_t
    h_prev = np.concatenate([s0[:, None], h[:, :-1]], axis=1)              # (B, T, D)
    da = g * h_prev
    if keep is not None:
        da *= keep[..., None]
    dz = g * h_tilde - da                                                  # db ⊙ h̃ − da ⊙ keep
    du_z = dz * z * (1.0 - z)
    dx_z, dWz, dbz = linear_bwd(du_z, x, p["Wz"])
    dx_h, dWh, dbh = linear_bwd(g * z, x, p["Wh"])
    return dx_z + dx_h, {"Wz": dWz, "bz": dbz, "Wh": dWh, "bh": dbh}


def egg_fwd(p, x, s0, keep=None):
    """p = {Wf, Uf, bf, Wh, Uh, bh}; x (B, T, D), s0 (B, D), keep (B, T) or None → (h, cache)."""
    gf = linear_fwd(x, p["Wf"], p["bf"])[0]                                # (B, T, D)
    gh = linear_fwd(x, p["Wh"], p["bh"])[0]                                # (B, T, D)
    B, T, D = x.shape
    s_in, f, c = np.empty((3, B, T, D), dtype=gf.dtype)                    # per step: s after reset, f, c
    h = np.empty_like(gf)
    s = s0
    for t in range(T):
        if keep is not None:
            s = s * keep[:, t, None]
        s_in[:, t] = s
        f[:, t] = sigmoid(gf[:, t] + s @ p["Uf"].T)
        c[:, t] = np.tanh(gh[:, t] + (f[:, t] * s) @ p["Uh"].T)
        s = s + f[:, t] * (c[:, t] - s)
        h[:, t] = s
    return h, (x, keep, s_in, f, c)


def egg_bwd(p, dh, cache):
    """(dx (B, T, D), grads {Wf, Uf, bf, Wh, Uh, bh}) for ``egg_fwd``, one step back at a time:
    dc = dŝ ⊙ f, dv_c = dc ⊙ (1 − c²), df = dŝ ⊙ (c − s) + (dv_c U_h) ⊙ s, dv_f = df ⊙ f(1 − f),
    ds = dŝ ⊙ (1 − f) + (dv_c U_h) ⊙ f + dv_f U_f, then ds ⊙ keep; dU_h += dv_cᵀ (f⊙s), dU_f += dv_fᵀ s."""
    x, keep, s_in, f, c = cache
    B, T, D = x.shape
    dvf, dvc = np.empty_like(dh), np.empty_like(dh)                        # dℓ/d(pre-σ), dℓ/d(pre-tanh)
    dUf, dUh = np.zeros_like(p["Uf"]), np.zeros_like(p["Uh"])
    carry = np.zeros((B, D), dtype=dh.dtype)                               # dℓ/ds' from step t + 1
    for t in range(T - 1, -1, -1):
        ds_new = dh[:, t] + carry
        s, ft, ct = s_in[:, t], f[:, t], c[:, t]
        dvc[:, t] = ds_new * ft * (1.0 - ct * ct)
        fs = ft * s
        dfs = dvc[:, t] @ p["Uh"]                                          # (B, D)
        df = ds_new * (ct - s) + dfs * s
        dvf[:, t] = df * ft * (1.0 - ft)
        ds = ds_new * (1.0 - ft) + dfs * ft + dvf[:, t] @ p["Uf"]
        dUh += dvc[:, t].T @ fs
        dUf += dvf[:, t].T @ s
        carry = ds if keep is None else ds * keep[:, t, None]
    dx_f, dWf, dbf = linear_bwd(dvf, x, p["Wf"])
    dx_h, dWh, dbh = linear_bwd(dvc, x, p["Wh"])
    return dx_f + dx_h, {"Wf": dWf, "Uf": dUf, "bf": dbf, "Wh": dWh, "Uh": dUh, "bh": dbh}


CELL_PASSES = {"mingru": (mingru_fwd, mingru_bwd), "egg": (egg_fwd, egg_bwd)}
