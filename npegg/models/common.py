"""The Model interface and its atoms: Parameter, MM, TMM, Embedding, Linear, MLP, LayerNorm.

A model is a class of pure functions (classmethods, no instance state):

- ``rand_init(key, ...) -> CommonInit(frozen_params, params, scan_map, es_map)``: ``params`` is a
  nested dict of arrays; ``es_map`` has the same structure and says how each leaf is perturbed
  (PARAM, MM_PARAM, EMB_PARAM, EXCLUDED); ``scan_map`` says which axes of a leaf are stacked layers
  (``()`` for none, ``(0,)`` for a per-layer stack on axis 0, which gets one key per layer).
- ``forward(noiser, frozen_noiser_params, noiser_params, frozen_params, params, es_tree_key,
  iterinfo, *args)``: with ``iterinfo=None`` the plain model (any leading batch axes); with
  ``iterinfo=(epoch, members)`` the perturbed population: every input has a leading axis P =
  len(members), and member p sees the parameters perturbed by thread id ``members[p]``.

Models never touch noise themselves: every parameter access goes through the noiser
(``do_mm``, ``do_Tmm``, ``do_emb``, ``get_noisy_standard``), which is what makes EGGROLL's
low-rank trick invisible to the model code.

Mirrors: hyperscalees/models/common.py (Model, CommonInit, CommonParams, Parameter, MM, TMM,
Linear, MLP, merge_inits, merge_frozen, call_submodule, simple_es_tree_key).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import keys as K
from ..tree import tree_items, unflatten

PARAM, MM_PARAM, EMB_PARAM, EXCLUDED = 0, 1, 2, 3


class CommonInit(NamedTuple):
    frozen_params: Any
    params: Any
    scan_map: Any
    es_map: Any


class CommonParams(NamedTuple):
    noiser: Any
    frozen_noiser_params: Any
    noiser_params: Any
    frozen_params: Any
    params: Any
    es_tree_key: Any
    iterinfo: Any


class Model:
    """Abstract model: ``rand_init`` and ``_forward`` are what a subclass writes."""

    @classmethod
    def rand_init(cls, key, *args, **kwargs) -> CommonInit:
        raise NotImplementedError

    @classmethod
    def forward(cls, noiser, frozen_noiser_params, noiser_params, frozen_params, params,
                es_tree_key, iterinfo, *args, **kwargs):
        return cls._forward(CommonParams(noiser, frozen_noiser_params, noiser_params, frozen_params,
                                         params, es_tree_key, iterinfo), *args, **kwargs)

    @classmethod
    def _forward(cls, common_params: CommonParams, *args, **kwargs):
        raise NotImplementedError


# -- composition helpers ---------------------------------------------------------------------------
def merge_inits(**inits: CommonInit) -> CommonInit:
    """Combine named sub-inits into one: each tree gets one entry per name."""
    frozen = {k: v.frozen_params for k, v in inits.items() if v.frozen_params is not None}
    return CommonInit(frozen or None,
                      {k: v.params for k, v in inits.items()},
                      {k: v.scan_map for k, v in inits.items()},
                      {k: v.es_map for k, v in inits.items()})


def merge_frozen(common: CommonInit, **kwargs) -> CommonInit:
    return common._replace(frozen_params={**(common.frozen_params or {}), **kwargs})


def call_submodule(cls, name: str, cp: CommonParams, *args, **kwargs):
    """Run ``cls._forward`` on the sub-trees called ``name``."""
    frozen = cp.frozen_params.get(name) if isinstance(cp.frozen_params, dict) else None
    return cls._forward(cp._replace(frozen_params=frozen, params=cp.params[name],
                                    es_tree_key=cp.es_tree_key[name]), *args, **kwargs)


def layer_slice(cp: CommonParams, layer: int) -> CommonParams:
    """The CommonParams of one layer of a per-layer stack (scan_map (0,)): params[l], keys[l]."""
    from ..tree import tree_map
    return cp._replace(params=tree_map(lambda p: p[layer], cp.params),
                       es_tree_key=tree_map(lambda k: k[layer], cp.es_tree_key))


def simple_es_tree_key(params, base_key, scan_map) -> dict:
    """One threefry key per leaf, as the reference builds them.

    Leaves in sorted-path order get ``split(base_key, n_leaves)[j]``; a leaf stacked on axis 0
    (scan_map ``(0,)``) gets ``split(leaf_key, n_layers)``, shape (L, 2). Bit-identical to
    HyperscaleES's ``simple_es_tree_key`` for the same base key.
    """
    items = list(tree_items(params))
    scans = dict(tree_items(scan_map)) if isinstance(scan_map, dict) else {p: scan_map for p, _ in items}
    leaf_keys = K.split(base_key, len(items))
    out = {}
    for (path, leaf), k in zip(items, leaf_keys):
        out[path] = _scan_split(np.shape(leaf), k, tuple(scans.get(path, ()) or ()))
    return unflatten(out) if isinstance(params, dict) else out[""]


def _scan_split(shape, k, scan):
    if not scan:
        return k
    sub = K.split(k, shape[scan[0]])  # (n, 2)
    return np.stack([_scan_split(shape, s, scan[1:]) for s in sub])


def per_member(v: np.ndarray, param_ndim: int, out_ndim: int) -> np.ndarray:
    """Make a possibly-perturbed parameter broadcast against a (P, ..., D) activation.

    ``get_noisy_standard`` returns ``param.shape`` when unperturbed and (P, *param.shape) when
    perturbed; in the second case insert singleton axes after P so it lines up with the
    activation's trailing axes.
    """
    if v.ndim == param_ndim:
        return v
    return v.reshape(v.shape[:1] + (1,) * (out_ndim - param_ndim - 1) + v.shape[1:])


# -- atoms -----------------------------------------------------------------------------------------
class Parameter(Model):
    """A free-standing tensor (a bias, a norm weight): es_map PARAM."""

    @classmethod
    def rand_init(cls, key, shape=None, scale=1.0, raw_value=None, dtype="float32", *args, **kwargs):
        if raw_value is not None:
            params = np.asarray(raw_value, dtype=dtype)
        else:
            params = (K.rng_from_key(key).standard_normal(shape) * scale).astype(dtype)
        return CommonInit(None, params, (), PARAM)

    @classmethod
    def _forward(cls, cp, *args, **kwargs):
        return cp.noiser.get_noisy_standard(cp.frozen_noiser_params, cp.noiser_params, cp.params,
                                            cp.es_tree_key, cp.iterinfo)


class MM(Model):
    """y = x Wᵀ with W (O, I), initialised N(0, 1/I): es_map MM_PARAM."""

    @classmethod
    def rand_init(cls, key, in_dim, out_dim, dtype="float32", *args, **kwargs):
        w = K.rng_from_key(key).standard_normal((out_dim, in_dim)) / np.sqrt(in_dim)
        return CommonInit(None, w.astype(dtype), (), MM_PARAM)

    @classmethod
    def _forward(cls, cp, x, *args, **kwargs):
        return cp.noiser.do_mm(cp.frozen_noiser_params, cp.noiser_params, cp.params, cp.es_tree_key,
                               cp.iterinfo, x)


class TMM(Model):
    """y = x W with W (I, O): es_map MM_PARAM (the transposed layout)."""

    @classmethod
    def rand_init(cls, key, in_dim, out_dim, dtype="float32", *args, **kwargs):
        w = K.rng_from_key(key).standard_normal((in_dim, out_dim)) / np.sqrt(in_dim)
        return CommonInit(None, w.astype(dtype), (), MM_PARAM)

    @classmethod
    def _forward(cls, cp, x, *args, **kwargs):
        return cp.noiser.do_Tmm(cp.frozen_noiser_params, cp.noiser_params, cp.params, cp.es_tree_key,
                                cp.iterinfo, x)


class Embedding(Model):
    """y = E[tokens] with E (V, D), initialised N(0, 1): es_map EMB_PARAM."""

    @classmethod
    def rand_init(cls, key, vocab, dim, dtype="float32", *args, **kwargs):
        e = K.rng_from_key(key).standard_normal((vocab, dim))
        return CommonInit(None, e.astype(dtype), (), EMB_PARAM)

    @classmethod
    def _forward(cls, cp, tokens, *args, **kwargs):
        return cp.noiser.do_emb(cp.frozen_noiser_params, cp.noiser_params, cp.params, cp.es_tree_key,
                                cp.iterinfo, tokens)


class Linear(Model):
    """y = x Wᵀ + b."""

    @classmethod
    def rand_init(cls, key, in_dim, out_dim, use_bias=True, dtype="float32", *args, **kwargs):
        parts = {"weight": MM.rand_init(key, in_dim, out_dim, dtype)}
        if use_bias:
            parts["bias"] = Parameter.rand_init(key, raw_value=np.zeros(out_dim), dtype=dtype)
        return merge_inits(**parts)

    @classmethod
    def _forward(cls, cp, x, *args, **kwargs):
        y = call_submodule(MM, "weight", cp, x)  # (P, ..., O)
        if "bias" in cp.params:
            y = y + per_member(call_submodule(Parameter, "bias", cp), 1, y.ndim)
        return y


def layer_norm(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """(x − mean) / √(var + eps) over the last axis, no affine part."""
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


def gelu(x):
    """tanh approximation, as jax.nn.gelu's default."""
    c = np.asarray(np.sqrt(2.0 / np.pi), dtype=x.dtype)
    u = x * x                       # c·(x + 0.044715·x³) = c·x·(1 + 0.044715·x²); x*x, not x**3,
    u *= np.asarray(0.044715, x.dtype)  # which NumPy sends through pow() at ~60× the cost
    u += 1
    u *= x
    u *= c
    np.tanh(u, out=u)
    u += 1
    u *= x
    u *= 0.5
    return u


def silu(x):
    return x / (1.0 + np.exp(-x))


ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "silu": silu,
    "gelu": gelu,
    "pqn": lambda x: np.maximum(layer_norm(x), 0),  # relu(layer_norm(x)), the notebook's choice
}


class MLP(Model):
    """Linear layers in_dim → hidden_dims… → out_dim, activation between them, none after the last."""

    @classmethod
    def rand_init(cls, key, in_dim, out_dim, hidden_dims, use_bias=True, activation="relu",
                  dtype="float32", *args, **kwargs):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        dims_in = [in_dim] + list(hidden_dims)
        dims_out = list(hidden_dims) + [out_dim]
        ks = K.split(key, len(dims_in))
        init = merge_inits(**{str(t): Linear.rand_init(ks[t], dims_in[t], dims_out[t], use_bias, dtype)
                              for t in range(len(dims_in))})
        return merge_frozen(init, activation=activation)

    @classmethod
    def _forward(cls, cp, x, *args, **kwargs):
        n = len(cp.params)
        act = ACTIVATIONS[cp.frozen_params["activation"]]
        for t in range(n):
            x = call_submodule(Linear, str(t), cp, x)
            if t != n - 1:
                x = act(x)
        return x


class LayerNorm(Model):
    """y = layer_norm(x) · w + b, with w = 1, b = 0 at init (both es_map PARAM)."""

    @classmethod
    def rand_init(cls, key, dim, use_bias=True, dtype="float32", *args, **kwargs):
        parts = {"weight": Parameter.rand_init(key, raw_value=np.ones(dim), dtype=dtype)}
        if use_bias:
            parts["bias"] = Parameter.rand_init(key, raw_value=np.zeros(dim), dtype=dtype)
        return merge_inits(**parts)

    @classmethod
    def _forward(cls, cp, x, *args, **kwargs):
        y = layer_norm(x) * per_member(call_submodule(Parameter, "weight", cp), 1, x.ndim)
        if "bias" in cp.params:
            y = y + per_member(call_submodule(Parameter, "bias", cp), 1, x.ndim)
        return y
