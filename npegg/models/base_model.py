"""The Model interface: what a model is, how its parameters are described, and how models compose.

A model is a class of pure functions (classmethods, no instance state):

- ``rand_init(key, ...) -> CommonInit(frozen_params, params, scan_map, es_map)``: ``params`` is a
  nested dict of arrays; ``es_map`` has the same structure and says how each leaf is perturbed
  (PARAM, MM_PARAM, EMB_PARAM, EXCLUDED); ``scan_map`` says which axes of a leaf are stacked layers
  (``()`` for none, ``(0,)`` for a per-layer stack on axis 0, which gets one key per layer).
- ``forward(noiser, frozen_noiser_params, noiser_params, frozen_params, params, es_tree_key,
  iterinfo, *args)``: with ``iterinfo=None`` the plain model (any leading batch axes); with
  ``iterinfo=(epoch, members)`` the perturbed population: every input has a leading axis P =
  len(members), and member p sees the parameters perturbed by member id ``members[p]``.

Models never touch noise themselves: every parameter access goes through the noiser
(``do_mm``, ``do_Tmm``, ``do_emb``, ``get_noisy_standard``), which is what makes EGGROLL's
low-rank trick invisible to the model code. The atoms (Parameter, MM, Linear, …) are in
``common.py``.

Mirrors: hyperscalees/models/base_model.py and the interface half of hyperscalees/models/common.py
(Model, CommonInit, CommonParams, merge_inits, merge_frozen, call_submodule, simple_es_tree_key).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import keys as K
from ..tree import tree_items, tree_map, unflatten

PARAM, MM_PARAM, EMB_PARAM, EXCLUDED = 0, 1, 2, 3


class CommonInit(NamedTuple):
    """What ``rand_init`` returns: frozen_params (settings), params, scan_map, es_map (same tree)."""
    frozen_params: Any
    params: Any
    scan_map: Any
    es_map: Any


class CommonParams(NamedTuple):
    """Everything a forward needs, bundled: noiser, its two param dicts, the model's, keys, iterinfo."""
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
        """Initial (frozen_params, params, scan_map, es_map) from a threefry key."""
        raise NotImplementedError

    @classmethod
    def forward(cls, noiser, frozen_noiser_params, noiser_params, frozen_params, params,
                es_tree_key, iterinfo, *args, **kwargs):
        """The model on ``args`` with every parameter read through ``noiser`` (``_forward``)."""
        return cls._forward(CommonParams(noiser, frozen_noiser_params, noiser_params, frozen_params,
                                         params, es_tree_key, iterinfo), *args, **kwargs)

    @classmethod
    def _forward(cls, common_params: CommonParams, *args, **kwargs):
        raise NotImplementedError


# -- composition helpers ---------------------------------------------------------------------------
def check_int(name: str, value, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int when it is an integer ``low`` ≤ value (< ``high``); else ValueError naming
    ``name``. Python and NumPy integers only: a bool, a float (even 8.0) or a string is refused
    rather than truncated or converted, so ``pop_size=16.7`` cannot silently become 16."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        kind = type(value).__name__
        raise ValueError(f"{name} must be an integer >= {low}" + (f" and < {high}" if high is not None else "")
                         + f", got {value!r} ({kind})")
    if value < low or (high is not None and value >= high):
        raise ValueError(f"{name} must be an integer >= {low}" + (f" and < {high}" if high is not None else "")
                         + f", got {value!r}")
    return int(value)


def merge_inits(**inits: CommonInit) -> CommonInit:
    """Combine named sub-inits into one: each tree gets one entry per name."""
    frozen = {k: v.frozen_params for k, v in inits.items() if v.frozen_params is not None}
    return CommonInit(frozen or None,
                      {k: v.params for k, v in inits.items()},
                      {k: v.scan_map for k, v in inits.items()},
                      {k: v.es_map for k, v in inits.items()})


def merge_frozen(common: CommonInit, **kwargs) -> CommonInit:
    """``common`` with ``kwargs`` added to its frozen_params (settings that are not parameters)."""
    return common._replace(frozen_params={**(common.frozen_params or {}), **kwargs})


def call_submodule(cls, name: str, cp: CommonParams, *args, **kwargs):
    """Run ``cls._forward`` on the sub-trees called ``name``."""
    frozen = cp.frozen_params.get(name) if isinstance(cp.frozen_params, dict) else None
    return cls._forward(cp._replace(frozen_params=frozen, params=cp.params[name],
                                    es_tree_key=cp.es_tree_key[name]), *args, **kwargs)


def layer_slice(cp: CommonParams, layer: int) -> CommonParams:
    """The CommonParams of one layer of a per-layer stack (scan_map (0,)): params[l], keys[l]."""
    return cp._replace(params=tree_map(lambda p: p[layer], cp.params),
                       es_tree_key=tree_map(lambda k: k[layer], cp.es_tree_key))


def stack_layers(layers: list[CommonInit]) -> CommonInit:
    """L layer inits of the same structure as one: every params leaf stacked on a new axis 0
    ((L, …) from L leaves (…)), scan_map ``(0,)`` per leaf (one noise key per layer), the first
    layer's frozen_params and es_map. Both language models' ``blocks/`` are built this way."""
    params = tree_map(lambda *leaves: np.stack(leaves), layers[0].params, *(l.params for l in layers[1:]))
    return CommonInit(layers[0].frozen_params, params, tree_map(lambda _: (0,), layers[0].es_map), layers[0].es_map)


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
