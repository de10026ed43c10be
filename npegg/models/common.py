"""The atoms models are built from: Parameter, MM, TMM, Embedding, Linear, MLP, LayerNorm.

Each atom reads its parameters only through the noiser (``get_noisy_standard``, ``do_mm``,
``do_Tmm``, ``do_emb``), so the same code is the plain model (``iterinfo=None``) and the perturbed
population. The Model interface itself (``Model``, ``CommonInit``, the es_map codes, composition
helpers) is in ``base_model.py``; its names are re-exported here, where the reference keeps them.

Mirrors: hyperscalees/models/common.py (Parameter, MM, TMM, Linear, MLP).
"""
from __future__ import annotations

import numpy as np

from .. import keys as K
from .base_model import (EMB_PARAM, EXCLUDED, MM_PARAM, PARAM, CommonInit, CommonParams, Model, check_int,
                         call_submodule, layer_slice, merge_frozen, merge_inits, per_member, simple_es_tree_key,
                         stack_layers)

__all__ = ["PARAM", "MM_PARAM", "EMB_PARAM", "EXCLUDED", "CommonInit", "CommonParams", "Model", "call_submodule",
           "layer_slice", "merge_frozen", "merge_inits", "per_member", "simple_es_tree_key", "stack_layers",
           "Parameter", "MM", "TMM", "Embedding", "Linear", "MLP", "LayerNorm", "layer_norm", "gelu", "silu",
           "ACTIVATIONS"]


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
        in_dim, out_dim = check_int("in_dim", in_dim), check_int("out_dim", out_dim)
        w = K.rng_from_key(key).standard_normal((out_dim, in_dim)) / np.sqrt(in_dim)
        return CommonInit(None, w.astype(dtype), (), MM_PARAM)

    @classmethod
    def _forward(cls, cp, x, *args, **kwargs):
        x = _features_in(x, np.shape(cp.params)[1], "y = x Wᵀ", np.shape(cp.params))
        return cp.noiser.do_mm(cp.frozen_noiser_params, cp.noiser_params, cp.params, cp.es_tree_key,
                               cp.iterinfo, x)


class TMM(Model):
    """y = x W with W (I, O): es_map MM_PARAM (the transposed layout)."""

    @classmethod
    def rand_init(cls, key, in_dim, out_dim, dtype="float32", *args, **kwargs):
        in_dim, out_dim = check_int("in_dim", in_dim), check_int("out_dim", out_dim)
        w = K.rng_from_key(key).standard_normal((in_dim, out_dim)) / np.sqrt(in_dim)
        return CommonInit(None, w.astype(dtype), (), MM_PARAM)

    @classmethod
    def _forward(cls, cp, x, *args, **kwargs):
        x = _features_in(x, np.shape(cp.params)[0], "y = x W", np.shape(cp.params))
        return cp.noiser.do_Tmm(cp.frozen_noiser_params, cp.noiser_params, cp.params, cp.es_tree_key,
                                cp.iterinfo, x)


def _features_in(x, width: int, what: str, shape) -> np.ndarray:
    """x as an array whose last axis is the layer's input width, else a ValueError saying so (NumPy's
    own matmul error names neither the input nor the layer)."""
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[-1] != width:
        raise ValueError(f"a layer {what} with W of shape {tuple(shape)} takes inputs whose last axis has "
                         f"{width} features; got an input of shape {x.shape}")
    return x


class Embedding(Model):
    """y = E[tokens] with E (V, D), initialised N(0, 1): es_map EMB_PARAM."""

    @classmethod
    def rand_init(cls, key, vocab, dim, dtype="float32", *args, **kwargs):
        vocab, dim = check_int("vocab", vocab), check_int("dim", dim)
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
        y = call_submodule(MM, "weight", cp, x)  # (P, ..., O), a fresh array from the noiser's do_mm
        if "bias" in cp.params:
            b = per_member(call_submodule(Parameter, "bias", cp), 1, y.ndim)
            y = np.add(y, b, out=y) if _fits(y, b) else y + b                # in place: the same bits
        return y


def layer_norm(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """(x − mean) / √(var + eps) over the last axis, no affine part.

    The two means are matrix-vector products with a (D,) vector of 1/D, which BLAS runs about twice
    as fast as NumPy's reductions over a short last axis; var = mean((x − mean)²), as ``np.var``.
    """
    x = np.asarray(x)
    avg = np.full(x.shape[-1], 1.0 / x.shape[-1], dtype=x.dtype if x.dtype.kind == "f" else np.float64)
    xc = x - (x @ avg)[..., None]
    var = (xc * xc) @ avg
    var += eps
    xc /= np.sqrt(var)[..., None]
    return xc


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
    """silu(x) = x · σ(x) = x / (1 + e⁻ˣ)."""
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
        if not isinstance(hidden_dims, (list, tuple)):
            raise ValueError(f"hidden_dims must be a list of integers >= 1 (one width per hidden layer, "
                             f"[] for none), got {hidden_dims!r}")
        hidden_dims = [check_int(f"hidden_dims[{i}]", d) for i, d in enumerate(hidden_dims)]
        in_dim, out_dim = check_int("in_dim", in_dim), check_int("out_dim", out_dim)
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
        y = layer_norm(x)                                  # a fresh array: scaled and shifted in place
        w = per_member(call_submodule(Parameter, "weight", cp), 1, x.ndim)
        y = np.multiply(y, w, out=y) if _fits(y, w) else y * w
        if "bias" in cp.params:
            b = per_member(call_submodule(Parameter, "bias", cp), 1, x.ndim)
            y = np.add(y, b, out=y) if _fits(y, b) else y + b
        return y


def _fits(y: np.ndarray, v: np.ndarray) -> bool:
    """Whether y ∘ v can be written into y (a fresh, writeable array) and give the same bits as a
    new array: v adds no dtype and no axis of its own."""
    return y.flags.writeable and np.result_type(y.dtype, v.dtype) == y.dtype and v.ndim <= y.ndim and \
        all(d in (1, e) for d, e in zip(v.shape[::-1], y.shape[::-1]))
