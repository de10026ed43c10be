"""EGG's step with the population's noise gathered once per call: the fast twin of ``EGG.forward``.

``generate`` runs T steps of one population. Through the Model interface every step asks the
noiser again for every leaf's noise (23 leaves at L = 2), signs and widens it, and converts each
operand between int8, int32 and float32 for every operation. ``bind`` does that work once per
call: each leaf's signed factors and perturbed vectors, each weight converted for BLAS (W_f and
W_h, which read the same input, stacked as one matrix). ``FusedEGG.step`` is then the arithmetic
of ``EGG.forward`` (docs/int8-spec.md §2–§5), in the same order, on the same integers.

Layout: every array is feature-major, (features, P) with the population on the *last* axis, so
that a member's scalar (its projection x·B, its norm's mean) broadcasts along contiguous rows
and the halves of a stacked output are contiguous blocks. The state is one (H, P) array per layer.

Activations, states and weights are held as exact integers in a float dtype ``dt`` (float32
where the bound below allows, else float64), so that matmuls run in BLAS and elementwise steps
need no conversions. Each operation is exact:

- W x and the projections u = x·B: every partial sum is bounded by I · 128 · max(|W|, |B|), and
  ``bind`` takes float32 only when that is < 2²⁴ (the bound of ``intmm.exact_matmul``).
- The low-rank term ⌊Σᵣ uᵣ aᵣ / 2^(4+σ)⌋ is a product u·(a·2^−(4+σ)) (the scaling is exact) and
  a floor, exact while |Σᵣ uᵣ aᵣ| < 2²⁴; the numerator N = W x + ⌊…⌋ is exact while it stays below
  2²⁴ too; and ⌊N / d⌋ (d = 16·⌊√I⌋) is floor(N / d): the rounded quotient lies within
  |N/d| · 2⁻²⁴ < 1/d of N/d, closer than any non-integer N/d is to an integer. ``bind`` proves
  both bounds for every input from |u| ≤ 128 · ‖Bₚ‖₁ (true at the defaults); where it cannot,
  each call checks them on its own u, and where they fail the term and the rescale run in int32
  as ``intmm.do_mm`` does them (``MMGroup.through_int32``).
- The layer norm (``fixedpoint.egg_ln``): Σ|x| ≤ 128·H and v = x·w ≤ 2¹⁴ are exact, and so is
  ⌊v / m⌋ computed as floor(v / m): a correctly rounded quotient of two exact integers cannot
  cross an integer, because a non-integer v/m lies at least 1/m ≥ 1/128 from one, more than half
  an ulp of any |q| ≤ 2¹⁴ in float32 (2⁻¹¹). The same holds for m = ⌊max(Σ|x|, 1) / H⌋.
- The cell (``fixedpoint.egg_gru``): g/256 = (f + 127)/256 has 8 significant bits, and g·s,
  g·(c − s) are integers below 2¹⁶, so (g/256)·s and (g/256)·(c − s) are exact and the floors
  give ⌊g s / 256⌋ and ⌊g (c − s) / 256⌋. The two ``wrap8`` casts are identities for every int8
  s and c ∈ [−127, 127] (g ∈ [0, 254]): ⌊g s / 256⌋ ∈ [−127, 126], and s + ⌊g (c − s) / 256⌋
  lies between s and c, since 0 ≤ g/256 < 1 keeps ⌊g d / 256⌋ between d and 0.
- The embedding: E[t] + ⌊A[t] Bᵀ / 2^(4+σ)⌋ with |A[t] Bᵀ| ≤ R · 128², B pre-scaled by 2^−(4+σ)
  (exact: a power of two); no clip on the plain lookup, as ``intmm.do_emb``.
- The log-likelihood: ``loglik.int_ll_columns``.

The one quirk a float cannot hold by itself is |−128| = −128 in the layer norm (docs/int8-spec.md
§2.5): only a stored −128 in the plain embedding table can reach a norm, and ``bind`` notes it so
the first norm counts it as the int8 ``abs`` does. The slow twin is ``EGG.forward``; tests compare
the two with ``np.array_equal`` on random and extreme inputs.

Mirrors: nano-egg run.py EGG._forward (through ``EGG.forward``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..int8.fixedpoint import LOGMAX, MAX, floor_div, floor_shift
from ..int8.intmm import F32_EXACT, F64_EXACT, max_abs, mm_divisor

ACT_BOUND = 128      # |activation| entering a matmul: clipped values, or a caller's int8 state
GATE_SCALE = 1.0 / (1 << (LOGMAX + 1))    # the cell's ⌊· / 256⌋, as an exact float factor


class MMGroup(NamedTuple):
    """n scaled matmuls reading the same input (docs/int8-spec.md §2.2), stacked."""
    w: np.ndarray             # (n·O, I) dt: W₁; W₂; …, value × 16
    bt: np.ndarray | None     # (R·n, I, P) dt: each member's B factors, r-major; None: unperturbed
    a: np.ndarray | None      # (R, n, O, P) dt: each member's signed A factors × 2^−(4+σ) (exact)
    shift: int                # 4 + σ
    divisor: int              # 16·⌊√I⌋
    acc_bound: int            # I · 128 · max|W|: bounds |W x|
    a_max: int                # max |A|
    exact_always: bool        # R · 128 · maxₚ‖Bₚ‖₁ · max|A| keeps the term exact for any input

    def __call__(self, x) -> np.ndarray:
        """clip(⌊(W x + ⌊A (Bᵀ x) / 2^(4+σ)⌋) / (16·⌊√I⌋)⌋) per member (``intmm.do_mm``): x (I, P)
        → (n·O, P), both exact integers in x's dtype; the result in [−127, 127]."""
        acc = self.numerator(x)
        if acc is None:
            return self.through_int32(x).astype(x.dtype)
        # ⌊N / d⌋ as floor(N / d): |N| < 2²⁴ (2⁵³) keeps the rounded quotient within 1/d of N/d,
        # closer than any integer N/d is not
        np.divide(acc, self.divisor, out=acc)
        np.floor(acc, out=acc)
        return acc.clip(-MAX, MAX, out=acc)

    def shifted(self, x) -> np.ndarray:
        """``self(x) + 128`` as intp in [1, 255], the head's l' = logit + 128 for ``loglik.int_ll_columns``."""
        acc = self.numerator(x)
        if acc is None:
            return (self.through_int32(x) + 128).astype(np.intp)
        np.divide(acc, self.divisor, out=acc)
        acc += 128
        # clip(⌊z⌋, −127, 127) + 128 = ⌊clip(z + 128, 1, 255)⌋, and for values ≥ 1 the cast's
        # truncation is that floor
        acc.clip(1, 2 * MAX + 1, out=acc)
        return acc.astype(np.int32).astype(np.intp)

    def numerator(self, x):
        """N = W x + ⌊A (Bᵀ x) / 2^(4+σ)⌋ (n·O, P) in x's dtype, or None when the low-rank term
        could leave the dtype's exact range (checked on this call's projections x·B)."""
        acc = self.w @ x                                                    # (n·O, P), exact (bind's bound)
        if self.a is None:
            return acc
        r, n, o, p = self.a.shape
        u = np.einsum("ip,kip->kp", x, self.bt).reshape(r, n, 1, p)         # x·B, exact (bind's bound)
        if not self.exact_always:                                           # bind's bound is too loose:
            term = r * float(np.abs(u).max()) * self.a_max                  # bound |Σᵣ uᵣ aᵣ| on this call's u
            if not _term_fits(term, self.acc_bound, self.shift, x.dtype):
                return None
        t = np.multiply(self.a[0], u[0])                                    # (n, O, P): u·a / 2^(4+σ), exact
        for k in range(1, r):
            t += self.a[k] * u[k]
        acc += np.floor(t, out=t).reshape(acc.shape)                        # floored on its own; exact sum
        return acc

    def through_int32(self, x) -> np.ndarray:
        """``self(x)`` with the term and the rescale in int32, ``intmm.do_mm``'s dtypes: (n·O, P) int32."""
        acc = (self.w @ x).astype(np.int32)
        if self.a is not None:
            r, n, o, p = self.a.shape
            u = np.einsum("ip,kip->kp", x, self.bt).astype(np.int32).reshape(r, n, 1, p)
            a = (self.a * (1 << self.shift)).astype(np.int32)               # the int8 factors again
            term = a[0] * u[0]
            for k in range(1, r):
                term += a[k] * u[k]
            acc += floor_shift(term, self.shift, out=term).reshape(acc.shape)
        floor_div(acc, self.divisor, out=acc)
        return acc.clip(-MAX, MAX, out=acc)


class Layer(NamedTuple):
    """One layer's parameters as the step reads them; vectors are (H, P) (perturbed) or (H, 1)."""
    ln1: np.ndarray           # dt, the norm weights, value × 16
    ln2: np.ndarray
    bf: np.ndarray            # dt, the gate's bias + 127 (so that the clip gives g = f + 127)
    bh: np.ndarray            # dt, the candidate's bias
    wfh: MMGroup              # W_f; W_h, both on LN₁(x)
    uf: MMGroup
    uh: MMGroup
    mlp0: MMGroup
    mlp1: MMGroup


class FusedEGG(NamedTuple):
    """Everything one population's steps read, gathered by ``bind``."""
    dt: type                  # np.float32 or np.float64: the dtype holding exact integers
    emb: np.ndarray           # (H, V) dt: the table, transposed, value × 16
    emb_b: np.ndarray | None  # (R, H, P) dt: B factors × 2^−(4+σ); None: unperturbed
    emb_a: np.ndarray | None  # (P, V, R) dt: signed A factors
    emb_wraps: bool           # the plain table holds a −128 (|−128| = −128 in the first norm)
    layers: tuple             # L × Layer
    ln_out: np.ndarray        # (H, P) or (H, 1) dt
    head: MMGroup

    def step(self, x, state):
        """One EGG step from its embedded input: x (H, P) dt (a row of ``embed``), state
        [L × (H, P) dt] → (l' = logits + 128 (V, P) intp in [1, 255], new state [L × (H, P) dt]).
        The integers of ``EGG.forward`` (module docstring)."""
        new_state = []                                                      # L × (H, P) dt, value × 127
        for l, layer in enumerate(self.layers):
            x, s = self.layer(layer, x, state[l], l == 0 and self.emb_wraps)
            new_state.append(s)
        return self.head.shifted(_ln(x, self.ln_out)), new_state

    def embed(self, tokens):
        """E[t], or clip(E[t] + ⌊A[t] Bᵀ / 2^(4+σ)⌋) (``intmm.do_emb``), for a block of steps:
        tokens (P, τ) ints → (τ, H, P) dt, value × 16 (the steps do not depend on each other here)."""
        x = np.ascontiguousarray(np.take(self.emb, tokens.T, axis=1).transpose(1, 0, 2))   # (τ, H, P)
        if self.emb_a is None:
            return x                                                        # no clip on the plain lookup
        rows = np.take_along_axis(self.emb_a, tokens[:, :, None].astype(np.intp), axis=1).T   # (R, τ, P): A[t]
        delta = self.emb_b[0] * rows[0][:, None, :]                         # (τ, H, P): A[t] Bᵀ / 2^(4+σ)
        for r in range(1, rows.shape[0]):
            delta += self.emb_b[r] * rows[r][:, None, :]
        x += np.floor(delta, out=delta)                                     # floored on its own
        return x.clip(-MAX, MAX, out=x)

    def layer(self, p: Layer, x, s, wraps=False):
        """``EggLayer``: a = LN₁(x); s' = GRU(a, s); x = clip(s' + x); x = clip(MLP(LN₂ x) + x).
        x (H, P) dt value × 16, s (H, P) dt value × 127 → (x, s')."""
        h = x.shape[0]
        fh = p.wfh(_ln(x, p.ln1, wraps))                                    # (2H, P): W_f a; W_h a
        # the gate f = clipped_add(W_f a, U_f s, bf), and g = f + 127 = clip(Σ + bf + 127, 0, 254)
        # (p.bf holds bf + 127)
        g = fh[:h]
        g += p.uf(s)
        g += p.bf
        g.clip(0, 2 * MAX, out=g)
        g *= GATE_SCALE                                                     # g/256 ∈ [0, 254/256]
        gated = np.multiply(g, s)                                           # ⌊g s / 256⌋ ∈ [−127, 126]
        np.floor(gated, out=gated)
        c = fh[h:]                                                          # the candidate, ``clipped_add``
        c += p.uh(gated)
        c += p.bh
        c.clip(-MAX, MAX, out=c)
        c -= s
        c *= g
        s_new = np.floor(c, out=c)
        s_new += s                                                          # s + ⌊g (c − s) / 256⌋: no wrap
        x = np.add(s_new, x)                                                # residual
        x.clip(-MAX, MAX, out=x)
        y = p.mlp1(p.mlp0(_ln(x, p.ln2)))                                   # MLP, no activation
        y += x
        return y.clip(-MAX, MAX, out=y), s_new


def _ln(x, w, wraps: bool = False):
    """``fixedpoint.egg_ln`` on exact integers: m = ⌊max(Σ|x|, 1) / H⌋, y = clip(⌊x w / m⌋), and
    row m = 0 → −1 / −2. wraps: count a −128 in x as −128, as int8 ``abs`` does.
    x (H, P) dt, w (H, P) or (H, 1) → (H, P) dt, value × 16."""
    h = x.shape[0]
    total = _ones(h, x.dtype) @ np.abs(x)                                   # (P,) Σ|x|, exact
    if wraps:
        total -= 2 * ACT_BOUND * (x == -ACT_BOUND).sum(axis=0)              # |−128| counted as −128
    np.maximum(total, 1, out=total)
    zero = total.min() < h                                                  # some row has m = 0
    m = np.floor(total / h, out=total)                                      # (P,) in [0, 128]
    y = np.multiply(x, w)                                                   # (H, P), |v| ≤ 2¹⁴
    np.divide(y, np.maximum(m, 1) if zero else m, out=y)
    np.floor(y, out=y)
    y.clip(-MAX, MAX, out=y)
    if zero:                                                                # DIV[0][v]: −1 if v = 0, else −2
        rows = m == 0
        y[:, rows] = np.where(x[:, rows] * np.broadcast_to(w, x.shape)[:, rows] == 0, -1, -2)
    return y


_ONES = {}


def _ones(n: int, dt) -> np.ndarray:
    """A read-only (n,) vector of ones in dt (the norm's row sums are one matrix-vector product)."""
    v = _ONES.get((n, dt))
    if v is None:
        v = _ONES[(n, dt)] = np.ones(n, dt)
        v.flags.writeable = False
    return v


# -- bind: the population's noise, once ----------------------------------------------------------------
def bind(noiser, frozen_noiser_params, noiser_params, params, es_tree_key, iterinfo):
    """Gather every leaf's (perturbed) parameters for ``FusedEGG``, or None when the noiser has no
    ``lowrank_noise`` (then ``generate`` steps through ``EGG.forward``). iterinfo: None (plain)
    or (epoch, members (P,))."""
    if getattr(noiser, "lowrank_noise", None) is None:
        return None

    def leaf(param, key):                                                   # (W, (sA, B, shift) or None)
        return param, noiser.lowrank_noise(frozen_noiser_params, noiser_params, param, key, iterinfo)

    blocks, bkeys = params["blocks"], es_tree_key["blocks"]
    att, katt, mlp, kmlp = blocks["att"], bkeys["att"], blocks["mlp"], bkeys["mlp"]
    mats = [{n: leaf(att[n][l], katt[n][l]) for n in ("Wf", "Wh", "Uf", "Uh")} |
            {f"mlp{n}": leaf(mlp[n]["weight"][l], kmlp[n]["weight"][l]) for n in ("0", "1")}
            for l in range(np.shape(att["bh"])[0])]
    head = leaf(params["head"], es_tree_key["head"])
    emb_f = noiser.lowrank_noise(frozen_noiser_params, noiser_params, params["emb"], es_tree_key["emb"], iterinfo)
    # float32 holds every partial sum of W x and x·B when I · 128 · max|W or B| < 2²⁴
    leaves = [head] + [m for lay in mats for m in lay.values()]
    worst = max(max(max_abs(w), max_abs(f[1]) if f else 0) for w, f in leaves)
    widest = max(np.shape(w)[1] for w, _ in leaves)
    dt = np.float32 if widest * ACT_BOUND * max(worst, 1) < F32_EXACT else np.float64

    def vec(param, key):                                                    # (H, P) or (H, 1) dt
        v = noiser.get_noisy_standard(frozen_noiser_params, noiser_params, param, key, iterinfo)
        return np.ascontiguousarray(np.asarray(v).T, dtype=dt) if np.ndim(v) == 2 else np.asarray(v, dt)[:, None]

    layers = tuple(Layer(
        ln1=vec(blocks["ln1"]["weight"][l], bkeys["ln1"]["weight"][l]),
        ln2=vec(blocks["ln2"]["weight"][l], bkeys["ln2"]["weight"][l]),
        bf=vec(att["bf"][l], katt["bf"][l]) + MAX, bh=vec(att["bh"][l], katt["bh"][l]),
        wfh=_group([lay["Wf"], lay["Wh"]], dt), uf=_group([lay["Uf"]], dt), uh=_group([lay["Uh"]], dt),
        mlp0=_group([lay["mlp0"]], dt), mlp1=_group([lay["mlp1"]], dt)) for l, lay in enumerate(mats))
    emb = np.asarray(params["emb"])
    emb_a = emb_b = None
    if emb_f is not None:
        a, b, shift = emb_f
        emb_a = a.astype(dt)                                                # (P, V, R)
        emb_b = np.ascontiguousarray(np.transpose(b, (2, 1, 0)), dtype=dt)    # (R, H, P)
        emb_b *= dt(2.0 ** -shift)                                          # exact: a power of two
    return FusedEGG(dt, np.ascontiguousarray(emb.T).astype(dt), emb_b, emb_a,
                    emb_f is None and bool((emb == -ACT_BOUND).any()), layers,
                    vec(params["ln_out"]["weight"], es_tree_key["ln_out"]["weight"]), _group([head], dt))


def _group(leaves, dt) -> MMGroup:
    """Stacked matmuls from [(W (O, I) int8, (sA (P, O, R), B (P, I, R), shift) or None), …] of one I."""
    w = np.concatenate([np.asarray(w) for w, _ in leaves])                 # (n·O, I) int8
    divisor, bound = mm_divisor(w.shape[1]), w.shape[1] * ACT_BOUND * max_abs(w)
    if leaves[0][1] is None:
        return MMGroup(np.ascontiguousarray(w, dtype=dt), None, None, 0, divisor, bound, 0, True)
    shift = int(leaves[0][1][2])
    n, (p, o, r), i = len(leaves), np.shape(leaves[0][1][0]), w.shape[1]
    a = np.empty((r, n, o, p), dt)                                          # the factors, transposed and
    bt = np.empty((r, n, i, p), dt)                                         # converted in one copy each
    for j, (_, (sa, b, _)) in enumerate(leaves):
        a[:, j] = np.transpose(sa, (2, 1, 0))
        bt[:, j] = np.transpose(b, (2, 1, 0))
    a_max = max(max_abs(f[0]) for _, f in leaves)
    # |x·Bₚ| ≤ 128 · ‖Bₚ‖₁ for every input the step can give (|x| ≤ 128)
    b_l1 = max(int(np.abs(f[1].astype(np.int32)).sum(axis=1).max()) for _, f in leaves)
    term = r * ACT_BOUND * b_l1 * a_max
    a *= dt(2.0 ** -shift)                                                  # exact: a power of two
    return MMGroup(np.ascontiguousarray(w, dtype=dt), bt.reshape((r * n, i, p)), a, shift, divisor, bound, a_max,
                   _term_fits(term, bound, shift, dt))


def _term_fits(term, acc_bound: int, shift: int, dt) -> bool:
    """Whether a low-rank term |Σᵣ uᵣ aᵣ| ≤ term and the numerator W x + ⌊term / 2^shift⌋ stay exact
    integers in dt (below 2²⁴ for float32, 2⁵³ for float64)."""
    exact = F32_EXACT if np.dtype(dt) == np.float32 else F64_EXACT
    return term < exact and acc_bound + term / (1 << shift) + 1 < exact
