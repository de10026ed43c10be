"""Byte-level language models in float, with the population on axis 0: nano-egg's layer and the minGRU.

``ByteLM`` is nano-egg's architecture in float (as in the seed's torch example), V = 256 bytes::

    x₀ = emb[token]                                            (P, T, D)
    for each layer l (params stacked on axis 0 under blocks/…, one noise key per layer):
        y, s'_l = cell(LN₁(x), s_l)                            the recurrent cell, state (P, D)
        x = x + y
        x = x + W₁ gelu(W₀ LN₂(x) + b₀) + b₁                   MLP D → mD → D (m = mlp_ratio; none if 0)
    logits = head · LN_out(x) [+ direct[token]]                head (V, D), no bias; direct (V, V)

LN is a LayerNorm with weight and bias. The cell is one of ``CELLS``:

- ``"egg"`` (``EggCell``): nano-egg's gated recurrent cell in float. It is an MGU-style variant
  of minGRU *with recurrent matrices* U_f, U_h, so it is genuinely sequential::

      f  = σ(W_f x + U_f s + b_f)
      c  = tanh(W_h x + U_h (f ⊙ s) + b_h)
      s' = (1 − f) ⊙ s + f ⊙ c                                 output y = s'

  (nano-egg's int8 version replaces σ and tanh by the identity and f by (f + 127)/256.)
- ``"mingru"`` (``npegg.models.mingru.MinGRUCell``): Feng et al.'s minGRU, whose gates see only the
  input, run as a parallel linear scan.

**Chunks and state.** ``forward(…, tokens (P, T) uint8, state (P, L, D), reset=None)`` →
(logits (P, T, 256), new state (P, L, D)). Before a step whose input byte is 0 (a document start)
the whole state stack of that member is set to 0; ``reset`` (P, T) bool overrides which steps
reset. Passing the returned state to the next chunk continues the stream exactly.

**Speed.** Layers are run one after the other over the whole chunk: layer l at step t needs only
layer l−1 up to step t, so every input projection, norm, MLP and the head is one batched matmul
over all P·T rows (the shared base matmul; EggRoll adds each member's rank-r term). In the loop
over t the egg cell keeps two matmuls, U_f s and U_h (f ⊙ s); the minGRU only an elementwise
multiply-add.
With low-rank noise the head's and the direct path's rank-r terms ride in one GEMM per member
(``_folded_head``) instead of two passes over the (P, T, 256) logits. With ``targets`` the head and log-softmax are fused, so the (P, T, 256) logits never exist at
once. Row-wise work runs on cache-sized member chunks (``_member_chunks``; a chunk of members gets
their own iterinfo, so nothing about the noise changes): the MLP and head always, and for the
minGRU the whole model. The minGRU's forward is the faster of the two, and a plain forward
costs about three quarters of a perturbed one (timings: ``benchmarks/lm_tuning_record.md``).

Every parameter is read through the noiser (``do_emb``, ``do_mm``, ``get_noisy_standard``), so
EggRoll perturbs them all and the same code is the plain model with ``iterinfo=None``.
"""
from __future__ import annotations

import numpy as np

from .. import keys as K
from .base_model import check_int
from .common import (MM, MLP, CommonInit, CommonParams, Embedding, LayerNorm, Model, Parameter, call_submodule,
                     layer_slice, merge_frozen, merge_inits, per_member, stack_layers)
from .mingru import MinGRUCell, sigmoid

VOCAB = 256
_CHUNK_BYTES = 2 << 20            # MLP and fused head + log-softmax run on member chunks of this size


class EggCell(Model):
    """nano-egg's gated recurrent cell in float, run step by step::

        f = σ(W_f x + U_f s + b_f);   c = tanh(W_h x + U_h (f ⊙ s) + b_h);   s' = (1 − f) ⊙ s + f ⊙ c

    Params: Wf, Uf, Wh, Uh (D, D) MM_PARAM (N(0, 1/D)); bf, bh (D,) PARAM (0).
    ``_forward(cp, x (P, T, D), s (P, D), keep (P, T) or None)`` → (y (P, T, D), s_T (P, D)).
    """

    @classmethod
    def rand_init(cls, key, dim, dtype="float32", *args, **kwargs):
        kf, ku, kh, kv = K.split(key, 4)
        zeros = np.zeros(dim)
        return merge_inits(Wf=MM.rand_init(kf, dim, dim, dtype), Uf=MM.rand_init(ku, dim, dim, dtype),
                           bf=Parameter.rand_init(key, raw_value=zeros, dtype=dtype),
                           Wh=MM.rand_init(kh, dim, dim, dtype), Uh=MM.rand_init(kv, dim, dim, dtype),
                           bh=Parameter.rand_init(key, raw_value=zeros, dtype=dtype))

    @classmethod
    def _input_terms(cls, cp, x):
        """W_f x + b_f and W_h x + b_h for every step at once: (P, T, D) each."""
        gf = call_submodule(MM, "Wf", cp, x) + per_member(call_submodule(Parameter, "bf", cp), 1, x.ndim)
        gh = call_submodule(MM, "Wh", cp, x) + per_member(call_submodule(Parameter, "bh", cp), 1, x.ndim)
        return gf, gh

    @classmethod
    def _recur(cls, cp, gf_t, gh_t, s):
        """One step given the input terms: gf_t, gh_t, s (P, D) → s' (P, D)."""
        f = sigmoid(gf_t + call_submodule(MM, "Uf", cp, s))                      # (P, D)
        c = np.tanh(gh_t + call_submodule(MM, "Uh", cp, f * s))                  # (P, D)
        return s + f * (c - s)

    @classmethod
    def _forward(cls, cp, x, s, keep=None, *args, **kwargs):
        gf, gh = cls._input_terms(cp, x)                                         # (P, T, D) each
        out = np.empty_like(gf)
        resets = [False] * x.shape[1] if keep is None else (keep == 0).any(axis=0).tolist()
        for t in range(x.shape[1]):
            if resets[t]:
                s = s * keep[:, t, None]
            s = cls._recur(cp, gf[:, t], gh[:, t], s)
            out[:, t] = s
        return out, s

    @classmethod
    def step(cls, cp, x_t, s, keep_t=None):
        """One step from scratch, x_t (P, D), s (P, D), keep_t (P,) → s' (P, D)."""
        if keep_t is not None:
            s = s * keep_t[:, None]
        gf, gh = cls._input_terms(cp, x_t[:, None])
        return cls._recur(cp, gf[:, 0], gh[:, 0], s)


CELLS = {"egg": EggCell, "mingru": MinGRUCell}


class ByteLM(Model):
    """Embedding → L pre-norm recurrent layers → LayerNorm → head, over bytes::

        x₀ = emb[t];  x += cell(LN₁ x, s_l);  x += W₁ gelu(W₀ LN₂ x + b₀) + b₁;  logits = head · LN_out(x)

    tokens (P, T) uint8, state (P, L, D) float; ``forward`` → (logits (P, T, 256), state),
    ``log_likelihood`` → (log p (P, T) in nats, state)."""

    @classmethod
    def rand_init(cls, key, hidden_dim, n_layers, cell="egg", vocab=VOCAB, head_scale=1.0, mlp_ratio=4,
                  direct_path=False, dtype="float32", *args, **kwargs) -> CommonInit:
        """Params N(0, 1/fan_in) (the embedding N(0, 1)), norms 1/0, biases 0; head × ``head_scale``.

        ``mlp_ratio`` m: each layer's MLP branch is D → mD → D; with m = 0 the layer is the cell
        alone (no ln2, no mlp leaves). The keys are drawn the same way for every m, so the other
        leaves of a model do not depend on it.

        ``direct_path``: a leaf ``direct`` (V, V), EMB_PARAM, initialised to 0, whose row for the
        input byte is added to the logits: a learned table from each byte straight to the next
        byte's logits, beside the path through the layers (which passes the byte's information
        through D numbers). It starts at 0, so the model's first predictions are those without it.

        Keys: split(key, 3) → embedding, blocks, head; the blocks key split per layer, each layer's
        into (cell, mlp) as nano-egg's (att, mlp). Layer leaves are stacked on axis 0 (scan_map (0,));
        the cell sits under ``blocks/att`` as in nano-egg, so its leaves are ``blocks/att/Wf`` etc.
        """
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        hidden_dim, n_layers, vocab = check_int("hidden_dim", hidden_dim), check_int("n_layers", n_layers), \
            check_int("vocab", vocab)
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, np.integer)) or mlp_ratio < 0:
            raise ValueError(f"mlp_ratio must be an integer >= 0, got {mlp_ratio!r}")
        k_emb, k_blocks, k_head = K.split(key, 3)
        layers = []
        for k in K.split(k_blocks, n_layers):
            k_att, k_mlp = K.split(k, 2)
            parts = dict(ln1=LayerNorm.rand_init(k, hidden_dim, dtype=dtype),
                         att=CELLS[cell].rand_init(k_att, hidden_dim, dtype=dtype))
            if mlp_ratio:
                parts.update(ln2=LayerNorm.rand_init(k, hidden_dim, dtype=dtype),
                             mlp=MLP.rand_init(k_mlp, hidden_dim, hidden_dim, [mlp_ratio * hidden_dim],
                                               activation="gelu", dtype=dtype))
            layers.append(merge_inits(**parts))
        blocks = stack_layers(layers)                                         # (L, …) leaves
        head = MM.rand_init(k_head, hidden_dim, vocab, dtype)
        head = head._replace(params=(head.params * head_scale).astype(dtype))
        parts = dict(emb=Embedding.rand_init(k_emb, vocab, hidden_dim, dtype), blocks=blocks,
                     ln_out=LayerNorm.rand_init(k_head, hidden_dim, dtype=dtype), head=head)
        if direct_path:
            parts["direct"] = Embedding.rand_init(k_head, vocab, vocab, dtype)._replace(
                params=np.zeros((vocab, vocab), dtype))
        init = merge_inits(**parts)
        return merge_frozen(init, cell=cell, hidden_dim=int(hidden_dim), n_layers=int(n_layers), vocab=int(vocab),
                            mlp_ratio=int(mlp_ratio), direct_path=bool(direct_path))

    @classmethod
    def rows_seen(cls, params: dict, tokens) -> dict:
        """{EMB leaf: (P, V) bool} for ``ES.step``: the rows of ``emb`` (and ``direct``) that member
        p's input bytes read, tokens (P, T). The forward reads those rows only, so the rest of each
        member's embedding noise cannot have changed its fitness."""
        tokens = np.asarray(tokens)
        P = tokens.shape[0]
        seen = np.zeros((P, params["emb"].shape[0]), bool)
        seen[np.arange(P)[:, None], tokens.reshape(P, -1)] = True
        return {name: seen for name in ("emb", "direct") if name in params}

    @classmethod
    def init_state(cls, frozen_params, batch: int, dtype="float32") -> np.ndarray:
        """The zero state stack: (P, L, D)."""
        return np.zeros((batch, frozen_params["n_layers"], frozen_params["hidden_dim"]), dtype=dtype)

    # -- forward ---------------------------------------------------------------------------------
    @classmethod
    def _features(cls, cp, tokens, state, reset=None):
        """LN_out of the last layer's output (P, T, D) and the new state (P, L, D)."""
        tokens = np.asarray(tokens)
        fp = cp.frozen_params
        if reset is None:
            reset = tokens == 0
        keep = None
        if reset.any():
            keep = (~reset).astype(cp.params["head"].dtype)                   # (P, T): 0 resets
        x = call_submodule(Embedding, "emb", cp, tokens)                      # (P, T, D)
        blocks = cp._replace(frozen_params=fp.get("blocks"), params=cp.params["blocks"],
                             es_tree_key=cp.es_tree_key["blocks"])
        cell = CELLS[fp["cell"]]
        new_state = np.empty_like(state)
        for l in range(fp["n_layers"]):
            lp = layer_slice(blocks, l)
            y, new_state[:, l] = call_submodule(cell, "att", lp, call_submodule(LayerNorm, "ln1", lp, x),
                                                state[:, l], keep)
            x = x + y                                                         # (P, T, D), a fresh array
            ratio = fp["mlp_ratio"]
            if not ratio:
                continue
            mlp_bytes = x.shape[1] * ratio * x.shape[2] * x.itemsize         # bytes of MLP hidden per member
            for sl, sub in _member_chunks(lp, x.shape[0], mlp_bytes):
                x[sl] += call_submodule(MLP, "mlp", sub, call_submodule(LayerNorm, "ln2", sub, x[sl]))
        return call_submodule(LayerNorm, "ln_out", cp, x), new_state

    @classmethod
    def _forward(cls, cp, tokens, state, reset=None, targets=None, *args, **kwargs):
        """The Model interface's entry (``forward``, ``ES.forward(…, targets=…)``): ``_logits``
        without targets, ``_log_likelihood`` with them."""
        if targets is None:
            return cls._logits(cp, tokens, state, reset)
        return cls._log_likelihood(cp, tokens, targets, state, reset)

    @classmethod
    def log_likelihood(cls, noiser, frozen_noiser_params, noiser_params, frozen_params, params, es_tree_key,
                       iterinfo, tokens, targets, state, reset=None):
        """log p(targets) in nats, (P, T), and the new state (P, L, D): ``forward`` with the head and
        log-softmax fused, so the (P, T, V) logits never exist at once. tokens, targets (P, T) uint8."""
        cp = CommonParams(noiser, frozen_noiser_params, noiser_params, frozen_params, params, es_tree_key, iterinfo)
        return cls._log_likelihood(cp, tokens, targets, state, reset)

    @classmethod
    def _logits(cls, cp, tokens, state, reset=None):
        """logits (P, T, V) = head · LN_out(x) (+ direct[token]) and the new state (P, L, D)."""
        tokens = np.asarray(tokens)
        h, new_state = cls._features(cp, tokens, state, reset)
        return cls._head(cp, h, tokens), new_state

    @classmethod
    def _head(cls, cp, h, tokens, factors=None):
        """head · h (+ direct[token]): h (P, T, D), tokens (P, T) → logits (P, T, V), a fresh array.

        With low-rank noise (``Noiser.lowrank_factors``) both rank-r terms ride in one GEMM per
        member (``_folded_head``); otherwise each leaf goes through the noiser on its own.
        ``factors``: ``_head_factors`` of these members, when the caller already has them."""
        folded = _folded_head(cp, h, tokens, factors)
        if folded is not None:
            return folded
        logits = call_submodule(MM, "head", cp, h)
        if "direct" in cp.params:
            logits += call_submodule(Embedding, "direct", cp, tokens)
        return logits

    @classmethod
    def _log_likelihood(cls, cp, tokens, targets, state, reset=None):
        """log softmax(logits)[target] (P, T) in nats and the new state (P, L, D).

        With the minGRU (no matmul in its loop over time) the whole model runs on cache-sized
        member chunks; the egg cell keeps all members together so its time loop runs once.
        """
        tokens, targets = np.asarray(tokens), np.asarray(targets)
        if CELLS[cp.frozen_params["cell"]] is MinGRUCell:
            reset = tokens == 0 if reset is None else reset
            T, D = tokens.shape[1], cp.frozen_params["hidden_dim"]
            out, new_state = np.empty(tokens.shape, state.dtype), np.empty_like(state)
            for sl, sub in _member_chunks(cp, tokens.shape[0], T * 4 * D * state.itemsize // 2):  # ~4× larger:
                # each chunk looks up every leaf's noise once, which costs more than cache misses save
                h, new_state[sl] = cls._features(sub, tokens[sl], state[sl], reset[sl])
                out[sl] = cls._head_log_likelihood(sub, h, tokens[sl], targets[sl])
            return out, new_state
        h, new_state = cls._features(cp, tokens, state, reset)
        return cls._head_log_likelihood(cp, h, tokens, targets), new_state

    @classmethod
    def _head_log_likelihood(cls, cp, h, tokens, targets):
        """log softmax(``_head``)[target] in member chunks: h (P, T, D), tokens, targets (P, T) → (P, T)."""
        P, T, _ = h.shape
        out = np.empty((P, T), dtype=h.dtype)
        factors = _head_factors(cp)                 # looked up once for all P members, sliced per chunk
        for sl, sub in _member_chunks(cp, P, T * cp.params["head"].shape[0] * h.itemsize):
            part = None if factors is None else {k: tuple(f[sl] for f in v) for k, v in factors.items()}
            out[sl] = log_softmax_at(cls._head(sub, h[sl], tokens[sl], part), targets[sl])
        return out


def _head_factors(cp):
    """{"head": (A, B, s)[, "direct": (A, B, s)]}: the unit low-rank factors of the head (and the
    direct table) for cp's members, ``Noiser.lowrank_factors``; None for the plain model or when
    a leaf has no low-rank noise (then the head goes through the noiser unfolded)."""
    if cp.iterinfo is None:
        return None
    out = {}
    for name in ("head", "direct"):
        if name in cp.params:
            out[name] = cp.noiser.lowrank_factors(cp.frozen_noiser_params, cp.noiser_params, cp.params[name],
                                                  cp.es_tree_key[name], cp.iterinfo)
            if out[name] is None:
                return None
    return out


def _folded_head(cp, h, tokens, factors=None):
    """The perturbed logits as one (T, K) @ (K, V) GEMM per member, or None without low-rank noise.

    With head W (V, D) perturbed by s_h·A_h B_hᵀ and direct E (V, V) by s_d·A_d B_dᵀ (rank r)::

        logits_p = h W_pᵀ + E_p[t]
                 = [h | s_h·(h B_h) | s_d·A_d[t]] · [Wᵀ ; A_hᵀ ; B_dᵀ]  +  E[t]       K = D + 2r

    the same sums as the unfused path (``do_mm``, ``do_emb``) summed in another order: float32
    results within a few ulps of it (``docs/determinism.md``), and one pass over the (T, V)
    logits instead of three.
    """
    factors = _head_factors(cp) if factors is None else factors
    if factors is None:
        return None
    direct = factors.get("direct")
    a_h, b_h, s_h = factors["head"]                                           # (P, V, r), (P, D, r), (P,)
    cols = [h, np.matmul(h, b_h) * s_h[:, None, None]]                        # (P, T, D), (P, T, r)
    rows = [cp.params["head"].T, a_h.transpose(0, 2, 1)]                      # (D, V), (P, r, V)
    if direct is not None:
        a_d, b_d, s_d = direct                                                # (P, V, r) each, (P,)
        cols.append(a_d[np.arange(len(tokens))[:, None], tokens] * s_d[:, None, None])   # (P, T, r)
        rows.append(b_d.transpose(0, 2, 1))                                   # (P, r, V)
    x = np.concatenate(cols, axis=-1)                                         # (P, T, K)
    w = np.empty((len(h), x.shape[-1], rows[0].shape[-1]), np.result_type(x, *rows))   # (P, K, V)
    lo = 0
    for r in rows:
        w[:, lo:lo + r.shape[-2]] = r
        lo += r.shape[-2]
    logits = np.matmul(x, w)                                                  # (P, T, V)
    if direct is not None:
        logits += np.take(cp.params["direct"], tokens, axis=0)
    return logits


def _member_chunks(cp, n: int, bytes_per_member: int):
    """(slice, CommonParams) over the population axis, ~_CHUNK_BYTES of activations per slice.

    Row-wise work (MLP, head, log-softmax) on a cache-sized chunk of members runs ~2× faster than
    on the whole (P, T, 4D) array at once. A perturbed chunk gets the iterinfo of its own members,
    so each member still sees exactly its own noise.
    """
    rows = max(1, _CHUNK_BYTES // max(1, bytes_per_member))
    for lo in range(0, n, rows):
        sl = slice(lo, lo + rows)
        yield sl, cp if cp.iterinfo is None else cp._replace(iterinfo=(cp.iterinfo[0], np.asarray(cp.iterinfo[1])[sl]))


#: a row's shift may lie this far above its largest logit: Σ exp(z − c) ≥ e⁻⁶⁰ ≈ 9e-27 stays a normal
#: float32 (≥ 1.2e-38), and log of it carries at most ulp(60) ≈ 4e-6 of absolute rounding
SHIFT_SLACK = 60.0


def log_softmax_at(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log softmax(logits)[target] = (z[target] − c) − log Σ exp(z − c) for a shift c ≥ max z: (…, V), (…) → (…).

    The shift is one number per leading index (a member's whole (T, V) block; a row for 2-D
    input): NumPy takes the maximum of a whole block ~10× faster than of each short row. Where
    a row's mean logit lies more than ``SHIFT_SLACK`` below its block's maximum, so its own
    maximum might too, that row is shifted by its own maximum instead, so no sum can underflow.
    The sums over V are a matrix-vector product (BLAS, ~4× NumPy's row sums). Overwrites
    ``logits`` (callers pass a fresh array); in place and on cache-sized chunks.
    """
    v = logits.shape[-1]
    z = logits.reshape(len(logits), -1, v) if logits.ndim > 1 else logits.reshape(1, 1, v)    # (B, N, V)
    shift = np.repeat(z.reshape(len(z), -1).max(axis=1), z.shape[1]).reshape(-1)          # (B·N,) block maxima
    z = z.reshape(-1, v)                                                                     # (B·N, V)
    ones = np.ones(v, z.dtype)
    far = np.flatnonzero(z @ (ones / v) < shift - SHIFT_SLACK)                              # mean far below
    if far.size:
        shift[far] = z[far].max(axis=1)
    z -= shift[:, None]                                                                      # every entry ≤ 0
    picked = z[np.arange(len(z)), targets.reshape(-1)]                                       # (B·N,)
    np.exp(z, out=z)
    return (picked - np.log(z @ ones)).reshape(targets.shape)
