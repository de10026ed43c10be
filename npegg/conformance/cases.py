"""Hypothesis strategies that generate one case (a flat dict of arrays and scalars) per operation.

Sizes, ranks, populations, σ, scales and settings are drawn by hypothesis (so a failure shrinks to
the smallest shapes and plainest settings); the array *values* come from a NumPy generator seeded
by a drawn integer (which shrinks to 0). What is drawn on purpose, because ports get it wrong:
rank above the matrix's smaller side, width 1, odd populations and member ids that do not start
at 0 (float operations; the int8 and pair operations need pairs), constant and tied raw scores
(z-score of identical scores, ranks with ties), magnitudes from 1e-3 to 1e3, a learning-rate
schedule (one rate per step), every optimizer setting, noise_reuse 0, log2 table sizes up to 30,
document starts (byte 0) in token streams, int8 values at ±127.

``strategy(op)`` is the only entry point; hypothesis is imported here, and this module only when
cases are generated (npegg's runtime never imports it).
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .. import keys as K
from ..models.egg import EGG
from ..models.lm import ByteLM
from ..tree import flatten

_SCALES = st.sampled_from([1.0, 1e-3, 1e3, 0.1, 10.0])
_SIGMAS = st.sampled_from([0.1, 1.0, 0.01, 3.0, 1e-3])
_U8 = 78                                            # |entries| of the int8 noise table (trunc(16·4.88))


def _rng(draw):
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def _f32(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _members(draw, rng, p, paired=False):
    """(P,) member ids: 0..P−1, or (float ops) a sorted sample of ids that may start anywhere."""
    if paired or draw(st.booleans()):
        return np.arange(p, dtype=np.int64)
    return np.sort(rng.choice(3 * p + 4, p, replace=False)).astype(np.int64)


def per_pair(members, make):
    """Rows of per-member noise where antithetic partners (ids 2k, 2k+1) share theirs: ``make(q)``
    draws one row per distinct pair, and each member gets its pair's row."""
    _, inv = np.unique(np.asarray(members) >> 1, return_inverse=True)
    return make(int(inv.max()) + 1)[inv]


def _int8_unit(rng, shape):
    return rng.integers(-_U8, _U8 + 1, shape).astype(np.int8)


def _lowrank(draw, rng, members, a, b, dtype="float"):
    r = draw(st.integers(1, min(a, b) + 2))          # up to two above the smaller side
    unit = (lambda shape: _int8_unit(rng, shape)) if dtype == "int8" else (lambda shape: _f32(rng, shape))
    return per_pair(members, lambda q: unit((q, a, r))), per_pair(members, lambda q: unit((q, b, r)))


def int8_full(rng, members, shape) -> dict:
    """Unit int8 full-rank noise as the table gives it: ``E`` (P, *shape) int32, the product of the
    pair of entries ``E_factors`` (P, *shape, 2) int8 (an adapter may inject either)."""
    f = per_pair(members, lambda q: _int8_unit(rng, (q,) + tuple(shape) + (2,)))
    return {"E": f[..., 0].astype(np.int32) * f[..., 1], "E_factors": f}


@st.composite
def _matmul(draw, op):
    rng = _rng(draw)
    p, n, i, o = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    w_scale, x_scale = draw(_SCALES), draw(_SCALES)
    m = _members(draw, rng, p)
    case = {"x": _f32(rng, (p, n, i), x_scale), "members": m, "sigma": draw(_SIGMAS)}
    if op == "do_mm":
        case["W"] = _f32(rng, (o, i), w_scale)
        case["A"], case["B"] = _lowrank(draw, rng, m, o, i)
    else:
        case["W"] = _f32(rng, (i, o), w_scale)
        case["A"], case["B"] = _lowrank(draw, rng, m, i, o)
    return case


@st.composite
def _emb(draw):
    rng = _rng(draw)
    p, n, v, d = draw(st.integers(1, 5)), draw(st.integers(1, 4)), draw(st.integers(1, 10)), draw(st.integers(1, 8))
    m = _members(draw, rng, p)
    a, b = _lowrank(draw, rng, m, v, d)
    return {"E": _f32(rng, (v, d), draw(_SCALES)), "tokens": rng.integers(0, v, (p, n)).astype(np.int64), "A": a, "B": b,
            "members": m, "sigma": draw(_SIGMAS)}


@st.composite
def _standard(draw):
    rng = _rng(draw)
    p, d = draw(st.integers(1, 6)), draw(st.integers(1, 8))
    m = _members(draw, rng, p)
    return {"p": _f32(rng, (d,), draw(_SCALES)), "E": per_pair(m, lambda q: _f32(rng, (q, d))), "members": m,
            "sigma": draw(_SIGMAS)}


def _raw(draw, rng, p):
    """Raw scores (P,) float32: spread, offset far from 0, all equal, or with ties."""
    kind = draw(st.sampled_from(["normal", "offset", "constant", "ties"]))
    scale = draw(_SCALES)
    raw = rng.standard_normal(p) * scale
    if kind == "offset":
        raw = raw + 700.0 * scale
    elif kind == "constant":
        raw = np.full(p, raw[0])
    elif kind == "ties":
        raw = np.round(raw / scale) * scale
    return raw.astype(np.float32)


@st.composite
def _fitness(draw, op):
    rng = _rng(draw)
    if op == "fitness_pair_sign":
        return {"raw": _raw(draw, rng, 2 * draw(st.integers(1, 6)))}
    p = draw(st.integers(1, 12))
    case = {"raw": _raw(draw, rng, p)}
    if op == "fitness_zscore":
        case["group_size"] = draw(st.sampled_from([0] + [g for g in range(1, p + 1) if p % g == 0]))
    return case


@st.composite
def _grad(draw, op):
    rng = _rng(draw)
    n = draw(st.integers(1, 9))
    case = {"fitness": _f32(rng, n), "members": _members(draw, rng, n), "sigma": draw(_SIGMAS)}
    if draw(st.booleans()):                            # z-scored fitnesses of a real population
        case["fitness"] = ((case["fitness"] - case["fitness"].mean()) / np.sqrt(case["fitness"].var() + 1e-5)).astype(np.float32)
    m = case["members"]
    if op == "grad_full":
        d = draw(st.integers(1, 8))
        case["E"] = per_pair(m, lambda q: _f32(rng, (q, d)))
    else:
        case["A"], case["B"] = _lowrank(draw, rng, m, draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    return case


def _lrs(draw, rng, k):
    lr = draw(st.sampled_from([0.1, 0.5, 1e-3, 0.01, 1.0]))
    if draw(st.booleans()):
        return np.full(k, lr)
    return lr * rng.uniform(0.0, 1.0, k)                # a schedule: one rate per step


@st.composite
def _optimizer(draw, op):
    rng = _rng(draw)
    k, d = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    grads = _f32(rng, (k, d), draw(_SCALES))
    if draw(st.booleans()):
        grads[rng.random((k, d)) < 0.3] = 0.0            # exact zeros: Adam's √v̂ + ε at its smallest
    case = {"p0": _f32(rng, d), "grads": grads, "lrs": _lrs(draw, rng, k)}
    if op == "sgd":
        case.update(momentum=draw(st.sampled_from([0.0, 0.9, 0.5])), nesterov=draw(st.booleans()))
    else:
        case.update(b1=draw(st.sampled_from([0.9, 0.8, 0.0])), b2=draw(st.sampled_from([0.999, 0.99, 0.95])),
                    eps=draw(st.sampled_from([1e-8, 1e-6, 1e-3])))
        if op == "adamw":
            case["weight_decay"] = draw(st.sampled_from([1e-4, 0.01, 0.1]))
    return case


@st.composite
def _int8(draw, op):
    rng = _rng(draw)
    p = draw(st.integers(1, 5))
    m = _members(draw, rng, p)
    case = {"members": m, "sigma_shift": draw(st.integers(0, 6))}
    if op == "int8_noisy_standard":
        d = draw(st.integers(1, 10))
        case["p"] = rng.integers(-127, 128, d).astype(np.int8)
        case.update(int8_full(rng, m, (d,)))
        return case
    if op == "int8_do_emb":
        v, d = draw(st.integers(1, 10)), draw(st.integers(1, 10))
        case["E"] = rng.integers(-127, 128, (v, d)).astype(np.int8)
        case["tokens"] = rng.integers(0, v, (p, draw(st.integers(1, 4)))).astype(np.int64)
        case["A"], case["B"] = _lowrank(draw, rng, m, v, d, "int8")
        return case
    i, o = draw(st.integers(1, 40)), draw(st.integers(1, 10))
    case["W"] = rng.integers(-127, 128, (o, i)).astype(np.int8)
    case["x"] = rng.integers(-127, 128, (p, draw(st.integers(1, 3)), i)).astype(np.int8)
    case["A"], case["B"] = _lowrank(draw, rng, m, o, i, "int8")
    return case


@st.composite
def _qegg_fitness(draw):
    rng = _rng(draw)
    raw = rng.integers(-3000, 3000, 2 * draw(st.integers(1, 8))).astype(np.int32)
    if draw(st.booleans()):
        raw[1::2] = raw[0::2]                             # ties: fitness 0
    return {"raw": raw}


def _key(rng):
    return rng.integers(0, 2**32, 2, dtype=np.uint64).astype(np.uint32)


@st.composite
def _noise(draw, op):
    rng = _rng(draw)
    if op == "fold_in":
        return {"key": _key(rng), "data": rng.integers(0, 2**32, draw(st.integers(1, 8)), dtype=np.uint64).astype(np.uint32)}
    if op == "split":
        return {"key": _key(rng), "n": draw(st.integers(1, 12))}
    if op == "table_entries":
        start = draw(st.integers(0, 2**31))
        return {"seed": draw(st.integers(0, 2**32 - 1)), "start": start, "stop": start + draw(st.integers(1, 64))}
    p = draw(st.integers(1, 9))
    case = {"key": _key(rng), "epoch": draw(st.integers(0, 5000)), "members": _members(draw, rng, p),
            "noise_reuse": draw(st.integers(0, 4))}
    if op == "start_index":
        case["log2_size"] = draw(st.integers(4, 30))
        return case
    a, b = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    case.update(seed=draw(st.integers(0, 2**32 - 1)), log2_size=draw(st.integers(8, 12)),
                shape=np.array([a, b], np.int64), rank=draw(st.integers(1, min(a, b) + 2)))
    return case


def _model_noise(rng, params: dict, kinds: dict, members, dtype="float", lead=(), r=None) -> dict:
    """Unit noise ``A/``, ``B/`` (MM, EMB: rank R) or ``E/`` (PARAM; int8: and ``E_factors/``) for
    every leaf, shared by partners; stacked leaves (blocks/…) get their layer axis after the member
    axis. ``lead``: extra leading axes (generations), each with its own noise."""
    r = int(rng.integers(1, 3)) if r is None else r
    if lead:
        steps = [_model_noise(rng, params, kinds, members, dtype, r=r) for _ in range(lead[0])]
        return {k: np.stack([s[k] for s in steps]) for k in steps[0]}
    out = {}
    for path, v in params.items():
        stack = (v.shape[0],) if path.startswith("blocks/") else ()
        shape = v.shape[1:] if stack else v.shape
        if kinds[path] in (1, 2):                        # MM_PARAM, EMB_PARAM
            for name, side in (("A", shape[0]), ("B", shape[1])):
                full = stack + (side, r)
                out[f"{name}/{path}"] = per_pair(members, lambda q: _int8_unit(rng, (q,) + full) if dtype == "int8"
                                                 else _f32(rng, (q,) + full))
        elif dtype == "int8":
            full = int8_full(rng, members, stack + shape)
            out[f"E/{path}"], out[f"E_factors/{path}"] = full["E"], full["E_factors"]
        else:
            out[f"E/{path}"] = per_pair(members, lambda q: _f32(rng, (q,) + stack + shape))
    return out


def _mlp_params(draw, rng):
    dims = [draw(st.integers(1, 4))] + draw(st.lists(st.integers(1, 6), max_size=2)) + [draw(st.integers(1, 3))]
    scale = draw(st.sampled_from([1.0, 0.1, 10.0]))
    params = {}
    for t in range(len(dims) - 1):
        params[f"{t}/weight"] = _f32(rng, (dims[t + 1], dims[t]), scale / np.sqrt(dims[t]))
        params[f"{t}/bias"] = _f32(rng, dims[t + 1], 0.1 * scale)
    return dims, params


@st.composite
def _mlp_forward(draw):
    rng = _rng(draw)
    dims, params = _mlp_params(draw, rng)
    p = draw(st.integers(1, 6))
    kinds = {k: (1 if k.endswith("weight") else 0) for k in params}
    noise = _model_noise(rng, params, kinds, np.arange(p))
    rank = next(v.shape[-1] for k, v in noise.items() if k.startswith("A/"))
    return {**{f"param/{k}": v for k, v in params.items()}, **noise, "x": _f32(rng, (p, dims[0])),
            "members": np.arange(p, dtype=np.int64), "sigma": draw(_SIGMAS), "rank": int(rank)}


@st.composite
def _es_step(draw):
    rng = _rng(draw)
    _, params = _mlp_params(draw, rng)
    p, k = draw(st.integers(1, 8)), draw(st.integers(1, 3))
    kinds = {n: (1 if n.endswith("weight") else 0) for n in params}
    noise = _model_noise(rng, params, kinds, np.arange(p), lead=(k,))
    rank = next(v.shape[-1] for n, v in noise.items() if n.startswith("A/"))
    opt = draw(st.sampled_from(["sgd", "adam", "adamw"]))
    case = {**{f"param/{n}": v for n, v in params.items()}, **noise, "members": np.arange(p, dtype=np.int64),
            "raw": np.stack([_raw(draw, rng, p) for _ in range(k)]), "sigma": draw(_SIGMAS), "rank": int(rank),
            "group_size": draw(st.sampled_from([0] + [g for g in range(1, p + 1) if p % g == 0])),
            "optimizer": opt, "lrs": _lrs(draw, rng, k), "momentum": draw(st.sampled_from([0.0, 0.9])),
            "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4}
    return case


def _streams(rng, p, t, vocab):
    s = rng.integers(0, vocab, (p, t + 1))
    s[rng.random(s.shape) < 0.15] = 0                    # document starts: the state resets
    return s[:, :-1].astype(np.uint8), s[:, 1:].astype(np.uint8)


@st.composite
def _bytelm(draw):
    rng = _rng(draw)
    d, layers, p, t = draw(st.integers(1, 6)), draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    init = ByteLM.rand_init(K.key(draw(st.integers(0, 2**16))), d, layers, cell=draw(st.sampled_from(["egg", "mingru"])),
                            mlp_ratio=draw(st.integers(0, 2)), direct_path=draw(st.booleans()))
    params, kinds = flatten(init.params), flatten(init.es_map)
    params = {k: (v + _f32(rng, v.shape, 0.1)).astype(np.float32) for k, v in params.items()}  # no zero leaves
    tin, tgt = _streams(rng, p, t, 256)
    noise = _model_noise(rng, params, kinds, np.arange(p))
    rank = next(v.shape[-1] for k, v in noise.items() if k.startswith("A/"))
    return {**{f"param/{k}": v for k, v in params.items()}, **noise, "cell": init.frozen_params["cell"],
            "tokens_in": tin, "tokens_tgt": tgt, "state0": _f32(rng, (p, layers, d), 0.5),
            "members": np.arange(p, dtype=np.int64), "sigma": draw(_SIGMAS), "rank": int(rank)}


def _egg_params(draw, rng):
    h, layers, vocab = draw(st.integers(1, 8)), draw(st.integers(1, 2)), draw(st.sampled_from([256, 7, 1]))
    init = EGG.rand_init(K.key(draw(st.integers(0, 2**16))), h, layers, vocab)
    params, kinds = flatten(init.params), flatten(init.es_map)
    if draw(st.booleans()):                              # adversarial: uniform int8, many at ±127
        params = {k: np.where(rng.random(v.shape) < 0.25, 127 * rng.choice([-1, 1], v.shape),
                              rng.integers(-127, 128, v.shape)).astype(np.int8) for k, v in params.items()}
    return params, kinds, h, layers, vocab


@st.composite
def _egg_forward(draw):
    rng = _rng(draw)
    params, kinds, h, layers, vocab = _egg_params(draw, rng)
    p, t = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    tin, tgt = _streams(rng, p, t, vocab)
    return {**{f"param/{k}": v for k, v in params.items()}, **_model_noise(rng, params, kinds, np.arange(p), "int8"),
            "tokens_in": tin, "tokens_tgt": tgt, "state0": rng.integers(-127, 128, (p, layers, h)).astype(np.int8),
            "members": np.arange(p, dtype=np.int64), "sigma_shift": draw(st.integers(0, 6))}


@st.composite
def _qegg_update(draw):
    rng = _rng(draw)
    params, kinds, *_ = _egg_params(draw, rng)
    pairs = draw(st.integers(1, 4))
    return {**{f"param/{k}": v for k, v in params.items()}, **_model_noise(rng, params, kinds, 2 * np.arange(pairs), "int8"),
            "fitness": rng.integers(-1, 2, pairs).astype(np.int8), "members": np.arange(2 * pairs, dtype=np.int64),
            "threshold": draw(st.integers(0, 40)), "use_clt": draw(st.booleans())}


def strategy(op: str):
    """The hypothesis strategy of cases for operation ``op`` (a key of ``protocol.OPERATIONS``)."""
    if op in ("do_mm", "do_Tmm"):
        return _matmul(op)
    if op.startswith("fitness_"):
        return _fitness(op)
    if op in ("grad_lowrank", "grad_full"):
        return _grad(op)
    if op in ("sgd", "adam", "adamw"):
        return _optimizer(op)
    if op in ("int8_do_mm", "int8_do_emb", "int8_noisy_standard"):
        return _int8(op)
    if op in ("fold_in", "split", "start_index", "table_entries", "lowrank_factors"):
        return _noise(op)
    return {"do_emb": _emb, "noisy_standard": _standard, "qegg_fitness": _qegg_fitness, "mlp_forward": _mlp_forward,
            "es_step": _es_step, "bytelm_forward": _bytelm, "egg_forward": _egg_forward,
            "qegg_update": _qegg_update}[op]()
