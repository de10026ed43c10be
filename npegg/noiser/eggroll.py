"""EggRoll: low-rank antithetic perturbations, E = A Bᵀ, and the ES update they give.

For a matrix W (a, b) and member n, with unit factors A (a, r), B (b, r) from the noise source
(``npegg.noise``), s = +1 for even n and −1 for odd n::

    W_n = W + s · σ/√r · A Bᵀ                                   (a rank-r perturbation)
    x W_nᵀ = x Wᵀ + (s · σ/√r) · (x B) Aᵀ                       (do_mm: never forms W_n)

So a population forward is one shared matmul ``x Wᵀ`` for all P members plus a rank-r term that
costs O((a + b) r) per input row. PARAM leaves (biases, norm weights) get full-rank noise
``p + s · σ · e`` (not divided by √r, as in the reference).

**The update.** With fitnesses f (P,) (``convert_fitnesses``), N = P, and the scaled factors
Âₙ = sₙ σ/√r Aₙ (what the reference returns as "A")::

    G = −√N · (1/N) Σₙ fₙ Âₙ Bₙᵀ            (MM and EMB leaves)
    G = −√N · (1/N) Σₙ fₙ sₙ σ eₙ           (PARAM leaves; 0 with freeze_nonlora)
    G = 0                                   (EXCLUDED leaves)

and ``G`` is handed to the optimizer, which *minimises*: ``sgd(lr)`` gives θ ← θ − lr·G. Writing
εₙ = sₙ Aₙ Bₙᵀ/√r for the unit-scale perturbation, ``G = −(σ/√N) Σₙ fₙ εₙ = −σ² √N · ĝ`` with
the textbook estimate ĝ = (1/(Nσ)) Σₙ fₙ εₙ of ∇ E[F(θ + σε)]. So G points *down* the fitness,
and the optimizer's descent climbs it. Nothing divides by σ: that is the reference's scale.

**Partners summed first.** Members 2q and 2q + 1 draw the same unit noise (``npegg.noise``, step
2), so wherever the noise source says so the sum runs over the distinct noise indices q = n >> 1,
each with its members' weights added first: Σₙ fₙ Âₙ Bₙᵀ = Σ_q (Σ_{n>>1=q} fₙ sₙ) σ/√r A_q B_qᵀ,
half the terms (and half the GEMM) for a population of pairs. Any member set works (a worker's
subset, an odd population, repeats); with ``rows_seen`` the weights are added row by row. It is the
same sum in another order: the last bits differ from the per-member sum (docs/determinism.md).

Differences from the reference, on purpose: ``do_emb`` is implemented (the reference raises) and
EMB leaves are updated like MM leaves (``update_emb=True``; pass False for the reference's zero
update); ``noise_reuse`` defaults to 1 (new noise every epoch; HyperscaleES's eggroll.py defaults
to 0, the notebook to 1); noise comes from ``npegg.noise`` instead of ``jax.random.normal``.

Mirrors: hyperscalees/noiser/eggroll.py (EggRoll, get_lora_update_params,
get_nonlora_update_params); ``EggRoll._leaf_grad`` (one leaf's G, PARAM leaves inline) and
``EggRoll._matrix_grad`` (an MM/EMB leaf's low-rank sum) compute what the reference's
``_simple_full_update`` and ``_simple_lora_update`` compute.
"""
from __future__ import annotations

import inspect

import numpy as np

from .. import fitness as F
from .. import optim
from ..models.base_model import EMB_PARAM, EXCLUDED, MM_PARAM, PARAM
from ..noise import NoiseTable, parse_iterinfo
from ..tree import tree_map_with_path, tree_items
from .base_noiser import Noiser

_CHUNK_BYTES = 64 << 20  # noise rebuilt per update chunk stays below this


def signs(members) -> np.ndarray:
    """+1 for even member ids, −1 for odd: (P,) int8, 1 − 2·(n mod 2)."""
    return (1 - 2 * (np.asarray(members) & 1)).astype(np.int8)


def member_signs(frozen, members) -> np.ndarray:
    """Each member's sign s (P,) int8: ±1 (``signs``), and 0 for the zero-noise baseline members of
    ``EggRollBS`` (n mod G ∈ {0, 1} when ``frozen`` has "baseline_group" G), so every perturbation
    and every update term of those members is exactly zero."""
    s = signs(members)
    group = frozen.get("baseline_group")
    if group:
        s = s * (np.asarray(members) % group >= 2).astype(np.int8)
    return s


def unit_lora(frozen, sigma, iterinfo, shape, key):
    """Unit factors A (P, a, r), B (P, b, r) and each member's scale s·σ/√r (P,)."""
    epoch, members = parse_iterinfo(*iterinfo)
    a_unit, b_unit = frozen["noise"].lowrank(key, epoch, members, shape, frozen["rank"], frozen["noise_reuse"])
    return a_unit, b_unit, member_signs(frozen, members) * np.float32(sigma / np.sqrt(frozen["rank"]))


def get_lora_update_params(frozen, sigma, iterinfo, shape, key):
    """Scaled factors of every member: Â = s·σ/√r·A (P, a, r) and B (P, b, r)."""
    a_unit, b_unit, scale = unit_lora(frozen, sigma, iterinfo, shape, key)
    return a_unit * scale[:, None, None], b_unit


def get_nonlora_update_params(frozen, sigma, iterinfo, shape, key):
    """Scaled full-rank noise of every member: s·σ·e, (P, *shape)."""
    epoch, members = parse_iterinfo(*iterinfo)
    noise = frozen["noise"]
    e = noise.full(key, epoch, members, shape, frozen["noise_reuse"])
    scale = member_signs(frozen, members) * np.float32(sigma)  # float32 scale: float32 noise stays float32
    scale = scale.reshape((-1,) + (1,) * len(shape))
    if isinstance(noise, NoiseTable) and e.flags.writeable and e.dtype == np.result_type(e.dtype, scale.dtype):
        return np.multiply(e, scale, out=e)   # a NoiseTable's writeable noise is a fresh copy (what it caches is read-only)
    return e * scale


class EggRoll(Noiser):
    """Low-rank antithetic ES: member n uses W + s_n σ/√r · A_n B_nᵀ on MM/EMB leaves, p + s_n σ e_n on
    PARAM leaves (s_n = ±1 for even/odd n), and the update hands the optimizer
    G = −√N · (1/N) Σₙ fₙ · (member n's scaled perturbation); the full derivation is in the module
    docstring. Mirrors: hyperscalees/noiser/eggroll.py EggRoll."""

    @classmethod
    def init_noiser(cls, params, sigma, lr, *args, solver=None, solver_kwargs=None, group_size=0,
                    freeze_nonlora=False, noise_reuse=1, rank=1, noise=None, noise_seed=0,
                    fitness="zscore", nan_policy="raise", update_emb=True, **kwargs):
        """Validate settings and build (frozen_noiser_params, noiser_params).

        sigma > 0; lr a float or schedule; solver an optimizer factory (``npegg.optim.sgd`` by
        default) or its name; rank ≥ 1; group_size ≥ 0 (0: one group; else it must divide the
        population, checked with the scores; odd sizes warn, see ``npegg.fitness.check_groups``);
        noise_reuse ≥ 0 (0: the same noise every epoch); noise a noise source (default
        ``NoiseTable(noise_seed)``); fitness one of ``npegg.fitness.SHAPERS``.
        """
        _check_sigma(sigma)
        if not (isinstance(rank, (int, np.integer)) and rank >= 1):
            raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
        if not (isinstance(group_size, (int, np.integer)) and group_size >= 0):
            raise ValueError(f"group_size must be an integer >= 0, got {group_size!r}")
        if not (isinstance(noise_reuse, (int, np.integer)) and noise_reuse >= 0):
            raise ValueError(f"noise_reuse must be an integer >= 0, got {noise_reuse!r}")
        if fitness not in F.SHAPERS:
            raise ValueError(f"fitness must be one of {sorted(F.SHAPERS)}, got {fitness!r}")
        if nan_policy not in F.NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {F.NAN_POLICIES}, got {nan_policy!r}")
        if solver is None:
            solver = optim.sgd
        if isinstance(solver, str):
            if solver not in optim.OPTIMIZERS:
                raise ValueError(f"solver must be one of {sorted(optim.OPTIMIZERS)}, got {solver!r}")
            solver = optim.OPTIMIZERS[solver]
        true_solver = solver(lr, **(solver_kwargs or {}))
        frozen = {"group_size": int(group_size), "freeze_nonlora": bool(freeze_nonlora),
                  "noise_reuse": int(noise_reuse), "rank": int(rank), "solver": true_solver,
                  "noise": noise if noise is not None else NoiseTable(seed=noise_seed),
                  "fitness": fitness, "nan_policy": nan_policy, "update_emb": bool(update_emb)}
        return frozen, {"sigma": float(sigma), "opt_state": true_solver.init(params)}

    # -- perturbed forward ---------------------------------------------------------------------------
    @classmethod
    def do_mm(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, x):
        """x Wᵀ + (x B) Âᵀ per member; W (O, I), x (P, …, I) → (P, …, O)."""
        return cls._matmul(frozen_noiser_params, noiser_params, param, base_key, iterinfo, x, transposed=False)

    @classmethod
    def do_Tmm(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, x):
        """x W + (x Â) Bᵀ per member; W (I, O), x (P, …, I) → (P, …, O)."""
        return cls._matmul(frozen_noiser_params, noiser_params, param, base_key, iterinfo, x, transposed=True)

    @classmethod
    def _matmul(cls, frozen, noiser_params, param, key, iterinfo, x, transposed):
        """One shared x Wᵀ (x W if transposed) for every member, plus each member's ``_matmul_noise``."""
        base = _shared_matmul(x, param if transposed else param.T)
        if iterinfo is None:
            return base
        base += cls._matmul_noise(frozen, noiser_params["sigma"], iterinfo, param.shape, key, x, transposed)
        return base                                      # added in place: base is fresh, and at least as wide

    @classmethod
    def _matmul_noise(cls, frozen, sigma, iterinfo, shape, key, x, transposed):
        """The hook for a perturbation's share of a matmul, (P, …, O): here s·σ/√r · (x B) Aᵀ
        ((x A) Bᵀ when transposed), never forming A Bᵀ."""
        a, b, scale = unit_lora(frozen, sigma, iterinfo, shape, key)
        consume = isinstance(frozen["noise"], NoiseTable)        # its writeable factors are fresh copies
        return _lowrank_term(x, a, b, scale, consume) if transposed else _lowrank_term(x, b, a, scale, consume)

    @classmethod
    def do_emb(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, tokens):
        """E[t] + Â[t] Bᵀ per member; E (V, D), tokens (P, …) → (P, …, D)."""
        tokens = np.asarray(tokens)
        if iterinfo is None:
            return param[tokens]
        p = tokens.shape[0]
        rows = cls._embedding_noise(frozen_noiser_params, noiser_params["sigma"], iterinfo, param.shape, base_key,
                                    tokens.reshape(p, -1))                    # (P, N, D), a fresh array
        rows = rows.reshape(tokens.shape + param.shape[1:])
        if rows.dtype != np.result_type(rows.dtype, param.dtype):              # e.g. a float64 model
            return param[tokens] + rows
        rows += np.take(param, tokens, axis=0)                                # E[t] added in place
        return rows

    @classmethod
    def _embedding_noise(cls, frozen, sigma, iterinfo, shape, key, tok):
        """The hook for a perturbation's rows of an embedding: tok (P, N) → (P, N, D); here Â[t] Bᵀ."""
        a, b, scale = unit_lora(frozen, sigma, iterinfo, shape, key)
        p = tok.shape[0]
        rows = a[np.arange(p)[:, None], tok] * scale[:, None, None]           # (P, N, R)
        if a.shape[-1] == 1:                                                  # rank 1: outer products
            return rows * b[:, None, :, 0]
        return np.matmul(rows, b.transpose(0, 2, 1))

    @classmethod
    def lowrank_factors(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo):
        """Unit factors A (P, a, r), B (P, b, r) and each member's s·σ/√r (P,) (``unit_lora``), the
        perturbation ``do_mm`` and ``do_emb`` add; None for a subclass whose forward hooks add
        another one (OpenES's full rank, Sparse's entries) and for the plain model."""
        if iterinfo is None or cls._matmul_noise.__func__ is not EggRoll._matmul_noise.__func__ \
                or cls._embedding_noise.__func__ is not EggRoll._embedding_noise.__func__:
            return None
        return unit_lora(frozen_noiser_params, noiser_params["sigma"], iterinfo, param.shape, base_key)

    @classmethod
    def get_noisy_standard(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo):
        """p unperturbed (or with freeze_nonlora), else p + s·σ·e: (P, *p.shape)."""
        if iterinfo is None or frozen_noiser_params["freeze_nonlora"]:
            return param
        noisy = get_nonlora_update_params(frozen_noiser_params, noiser_params["sigma"], iterinfo, param.shape,
                                          base_key)                         # (P, *shape), a fresh array
        if noisy.dtype != np.result_type(noisy.dtype, param.dtype):         # e.g. a float64 model
            return param + noisy
        noisy += param                       # p added in place: the same bits as p + s·σ·e (+ commutes)
        return noisy

    # -- fitness and update -------------------------------------------------------------------------
    @classmethod
    def convert_fitnesses(cls, frozen_noiser_params, noiser_params, raw_scores, num_episodes_list=None):
        """Shape raw scores with the configured shaper (``npegg.fitness``); z-scores by default.

        ``num_episodes_list`` is accepted and ignored, as the reference does.
        """
        raw = np.asarray(raw_scores)
        # any group size dividing P, as the reference; zscore warns where it splits antithetic pairs
        F.check_population(raw.size, frozen_noiser_params["group_size"], antithetic=False)
        return F.shape_fitness(raw, frozen_noiser_params["fitness"], frozen_noiser_params["group_size"],
                               frozen_noiser_params["nan_policy"])

    @classmethod
    def estimate_grads(cls, frozen_noiser_params, noiser_params, params, base_keys, fitnesses, iterinfos, es_map,
                       rows_seen=None):
        """G = −√N · (1/N) Σₙ fₙ Âₙ Bₙᵀ (MM/EMB), −√N · (1/N) Σₙ fₙ sₙ σ eₙ (PARAM), 0 (EXCLUDED), per
        leaf (per layer of a stacked leaf), before the optimizer. fitnesses (N,), iterinfos
        (epochs (N,) or a scalar, members (N,)); returns a tree like params, their dtypes.

        ``rows_seen`` (npegg's addition, default None = the reference's estimate): {path of an EMB
        leaf (V, D): (N, V) bool}, which rows member n's forward read. For such a leaf the sum
        becomes Σₙ fₙ (mₙ ⊙ Âₙ) Bₙᵀ: a row member n never read cannot have changed its fitness, so
        its term fₙ Âₙ[v] Bₙᵀ has mean 0 (Âₙ[v] is independent of everything else); leaving it
        out keeps the estimate's expectation and removes that noise.
        """
        epochs, members = iterinfos
        epoch, members = parse_iterinfo(epochs, members)
        f = np.asarray(fitnesses, dtype=np.float64)
        if f.shape != members.shape:
            raise ValueError(f"fitnesses shape {f.shape} does not match the {members.size} members of iterinfos")
        if not np.isfinite(f).all():
            raise ValueError("fitnesses contain non-finite values")
        F.check_population(members.size, antithetic=False)  # the estimate needs no pairs and no groups
        keys = dict(tree_items(base_keys))
        kinds = dict(tree_items(es_map))
        rows_seen = _check_rows_seen(rows_seen, params, kinds, members.size)

        def grad(path, p):
            p = np.asarray(p)
            kind = int(kinds[path])
            k = np.asarray(keys[path])
            rows = rows_seen.get(path)
            if k.ndim == 2:  # a per-layer stack: one key per layer
                return np.stack([cls._leaf_grad(frozen_noiser_params, noiser_params, p[l], k[l], f, epoch, members, kind,
                                                rows) for l in range(k.shape[0])])
            return cls._leaf_grad(frozen_noiser_params, noiser_params, p, k, f, epoch, members, kind, rows)
        return tree_map_with_path(grad, params)

    @classmethod
    def do_updates(cls, frozen_noiser_params, noiser_params, params, base_keys, fitnesses, iterinfos, es_map,
                   rows_seen=None):
        """Estimate G per leaf (``rows_seen``: ``estimate_grads``), let the optimizer turn it into
        updates, apply them."""
        g = cls.estimate_grads(frozen_noiser_params, noiser_params, params, base_keys, fitnesses, iterinfos, es_map,
                               rows_seen)
        solver = frozen_noiser_params["solver"]
        updates, opt_state = solver.update(g, noiser_params["opt_state"], params)
        return {**noiser_params, "opt_state": opt_state}, optim.apply_updates(params, updates)

    @classmethod
    def _leaf_grad(cls, frozen, noiser_params, p, key, f, epoch, members, kind, rows=None):
        """G for one (unstacked) leaf, accumulated over member chunks so memory stays bounded;
        ``rows`` (N, V) bool or None: the EMB rows each member read (``estimate_grads``).

        Where the members sharing a noise index share their unit noise (``_combines_pairs``), the
        sum runs over the distinct noise indices q = n >> 1 with each one's weights summed first:
        Σₙ wₙ sₙ c εₙ = Σ_q (Σ_{n: n>>1 = q} wₙ sₙ c) ε_q, half the terms for antithetic pairs."""
        sigma = noiser_params["sigma"]
        dt = np.result_type(p.dtype, np.float32)
        n = members.size
        if kind == EXCLUDED or (kind == EMB_PARAM and not frozen["update_emb"]) or \
                (kind == PARAM and frozen["freeze_nonlora"]):
            return np.zeros_like(p)
        if kind not in (PARAM, MM_PARAM, EMB_PARAM):
            raise ValueError(f"unknown es_map code {kind}; expected PARAM, MM_PARAM, EMB_PARAM or EXCLUDED")
        acc = np.zeros(p.shape, dt)
        step = max(1, _CHUNK_BYTES // (4 * max(1, cls._noise_floats(frozen, kind, p.shape))))
        if cls._combines_pairs(frozen, kind):
            if kind == PARAM:        # s·σ·e = s · fl(σ·e) exactly (s ∈ {−1, 0, 1}): the sign joins the weight
                scale = member_signs(frozen, members).astype(dt)
            else:
                scale = member_signs(frozen, members) * np.float32(sigma / np.sqrt(frozen["rank"]))
            heads, wq = combine_by_noise_index(members, (f.astype(dt) * scale).astype(dt), rows)  # (Q,), (Q[, a])
            for lo in range(0, heads.size, step):
                sl = slice(lo, lo + step)
                info = (epoch, heads[sl])
                if kind == PARAM:
                    e = frozen["noise"].full(key, epoch, heads[sl], p.shape, frozen["noise_reuse"])
                    e = np.multiply(e, np.float32(sigma), out=e if e.flags.writeable else None)  # (c, *shape): σ·e_q
                    acc += np.tensordot(wq[sl], e.astype(dt, copy=False), axes=(0, 0))
                else:
                    acc += cls._paired_matrix_grad(frozen, sigma, info, p.shape, key, wq[sl])
        else:
            for lo in range(0, n, step):
                sl = slice(lo, lo + step)
                info = (epoch, members[sl])
                w = f[sl].astype(dt)  # (c,)
                if kind == PARAM:
                    e = get_nonlora_update_params(frozen, sigma, info, p.shape, key)  # (c, *shape)
                    acc += np.tensordot(w, e.astype(dt), axes=(0, 0))
                else:
                    acc += cls._matrix_grad(frozen, sigma, info, p.shape, key, w, None if rows is None else rows[sl])
        # divided in float64 on every NumPy: NumPy < 2 would divide a float32 acc by the float64
        # scalar in float32 (value-based promotion), and every trajectory would differ in its last bits
        return (-acc.astype(np.float64) / np.sqrt(n)).astype(p.dtype)

    @classmethod
    def _combines_pairs(cls, frozen, kind) -> bool:
        """Whether the update may sum the weights of members sharing a noise index first: the noise
        source gives members 2q and 2q + 1 the same unit noise (``NoiseTable.pairs_share_noise``;
        an ``InjectedNoise`` need not) and, for MM/EMB leaves, the update's hooks are EggRoll's sum
        of unit factors times s·σ/√r (``_factors_shared_by_pairs``; OpenES and Sparse sum their own
        way and keep the per-member sum)."""
        if not getattr(frozen["noise"], "pairs_share_noise", False):
            return False
        return kind == PARAM or (cls._matrix_grad.__func__ is EggRoll._matrix_grad.__func__
                                 and cls._factors_shared_by_pairs())

    @classmethod
    def _factors_shared_by_pairs(cls) -> bool:
        """Whether ``_update_factors`` gives member n factors of its noise index n >> 1 alone and the
        scale s·σ/√r of ``unit_lora``: true of this hook; a subclass that overrides the hook says so
        again for its own (``AltEggRoll``), else the update keeps its per-member sum."""
        return cls._update_factors.__func__ is EggRoll._update_factors.__func__

    @classmethod
    def _noise_floats(cls, frozen, kind, shape):
        """Floats of one member's noise for a leaf (sizes the update's member chunks)."""
        if kind == PARAM:
            return int(np.prod(shape))
        return (shape[0] + shape[1]) * frozen["rank"]

    @classmethod
    def _matrix_grad(cls, frozen, sigma, info, shape, key, w, rows=None):
        """The hook a noiser overrides for MM/EMB leaves: Σₙ wₙ · (member n's scaled perturbation)
        over a chunk of members, (a, b), its rows masked by ``rows`` (c, a) bool when given. Here
        Σₙ wₙ (mₙ ⊙ Âₙ) Bₙᵀ, as one (a × cR) @ (cR × b) matmul."""
        a, b, scale = cls._update_factors(frozen, sigma, info, shape, key)  # (c, a, R), (c, b, R), (c,)
        if rows is not None:
            a = a * rows[:, :, None]                                      # unread rows' noise left out
        c, rows, r = a.shape
        w = (w * scale).astype(w.dtype)                                   # (c,) in the update's precision
        aw = (a * w[:, None, None]).transpose(1, 0, 2).reshape(rows, c * r)
        # astype copies B into a contiguous block; keep it: on a strided view BLAS sums in another
        # order, and the last bits of G (and every run's trajectory after it) would change.
        return aw @ b.transpose(0, 2, 1).reshape(c * r, shape[1]).astype(aw.dtype)

    @classmethod
    def _paired_matrix_grad(cls, frozen, sigma, info, shape, key, wq):
        """Σ_q wq (⊙ rows) A_q B_qᵀ over a chunk of noise indices, (a, b): info's members are one
        member of each index, wq (c,) or (c, a) (per row, with EMB masks) their summed weights
        w·s·σ/√r, so only the unit factors of ``_update_factors`` are used. One (a × cR) @ (cR × b)
        matmul, as ``_matrix_grad``."""
        a, b, _ = cls._update_factors(frozen, sigma, info, shape, key)      # (c, a, R), (c, b, R)
        c, rows, r = a.shape
        w = wq[:, None, :] if wq.ndim == 2 else wq[:, None, None]           # (c, 1, a) or (c, 1, 1)
        aw = np.empty((c, r, rows), np.result_type(a.dtype, wq.dtype))      # (c, R, a)
        np.multiply(a.transpose(0, 2, 1), w, out=aw)
        bt = b.transpose(0, 2, 1).reshape(c * r, shape[1])                  # (cR, b): a view at rank 1
        # (cR, a)ᵀ (cR, b): BLAS reads the transpose and B's row stride itself, so neither is copied
        return aw.reshape(c * r, rows).T @ (bt if bt.dtype == aw.dtype else bt.astype(aw.dtype))

    @classmethod
    def _update_factors(cls, frozen, sigma, info, shape, key):
        """The hook for the factors the update sums, (A (c, a, R), B (c, b, R), scale (c,)): here the
        forward's own unit factors and s·σ/√r (``AltEggRoll`` takes their signs)."""
        return unit_lora(frozen, sigma, info, shape, key)


def combine_by_noise_index(members, w, rows=None):
    """The weights of members that share a noise index q = n >> 1, summed: (heads (Q,) int64, the
    first member of each distinct q in ascending q; wq (Q,), Σ_{n: n>>1 = q} wₙ, or with ``rows``
    (N, a) bool, (Q, a): Σ wₙ mₙ row by row, so partners with different masks combine exactly).

    members (N,) int64 (any set: a worker's subset, odd sizes, repeats), w (N,) float. The sums are
    taken in float64 in member order and rounded once to w's dtype: for a pair, fl(w₂q + w₂q₊₁)."""
    members = np.asarray(members, np.int64)
    q = members >> 1
    if q.size % 2 == 0 and np.array_equal(q[0::2], q[1::2]) and (np.diff(q[0::2]) > 0).all():
        # the common case, ascending whole pairs (a population, a worker's chunk): the same sums,
        # fl(w₂q + w₂q₊₁) either way (the float64 sum of two float32s is exact, then rounded once)
        if rows is None:
            return members[0::2], w[0::2] + w[1::2]
        return members[0::2], w[0::2, None] * rows[0::2] + w[1::2, None] * rows[1::2]
    uq, first, inv = np.unique(q, return_index=True, return_inverse=True)
    heads = members[first]
    if rows is None:
        wq = np.bincount(inv.ravel(), weights=w, minlength=uq.size)        # (Q,) float64
    else:
        wq = np.zeros((uq.size, rows.shape[1]), np.float64)               # (Q, a)
        np.add.at(wq, inv.ravel(), w[:, None] * rows)
    return heads, wq.astype(w.dtype)


def eggroll_keywords(fn):
    """Decorator for a subclass's ``init_noiser(…, **kwargs)`` that passes EggRoll's settings on: its
    signature lists EggRoll's keywords too, so ``ES.create``'s check of keyword names accepts them
    (and still refuses a misspelling)."""
    own = inspect.signature(fn)
    named = [p for p in own.parameters.values() if p.kind != p.VAR_KEYWORD]
    have = {p.name for p in named}
    inherited = [p for p in inspect.signature(EggRoll.init_noiser.__func__).parameters.values()
                 if p.kind == p.KEYWORD_ONLY and p.name not in have]
    rest = [p for p in own.parameters.values() if p.kind == p.VAR_KEYWORD]
    fn.__signature__ = own.replace(parameters=named + inherited + rest)
    return fn


def _check_rows_seen(rows_seen, params, kinds: dict, n: int) -> dict:
    """{} for None; else check every entry names an EMB leaf (V, …) and is an (n, V) bool array."""
    if rows_seen is None:
        return {}
    if not isinstance(rows_seen, dict):
        raise TypeError(f"rows_seen must be a dict {{EMB leaf path: (members, rows) bool}}, got {type(rows_seen).__name__}")
    leaves = dict(tree_items(params))
    out = {}
    for path, m in rows_seen.items():
        if path not in leaves or kinds.get(path) != EMB_PARAM:
            emb = sorted(p for p, k in kinds.items() if k == EMB_PARAM)
            raise ValueError(f"rows_seen: {path!r} is not an EMB_PARAM leaf; those are {emb}")
        m = np.asarray(m)
        rows = np.shape(leaves[path])[-2]
        if m.dtype != bool or m.shape != (n, rows):
            raise ValueError(f"rows_seen[{path!r}] must be a bool array of shape ({n}, {rows}), "
                             f"got {m.dtype} {m.shape}")
        out[path] = m
    return out


def _check_sigma(sigma):
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma}")


def _shared_matmul(x, w):
    """x (…, I) @ w (I, O) as one GEMM over all leading axes."""
    x = np.asarray(x)
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(x.shape[:-1] + (w.shape[1],))


def _lowrank_term(x, first, second, scale, consume=False):
    """scale · (x · first) · secondᵀ per member.

    x (P, …, I), first (P, I, R), second (P, O, R), scale (P,) → (P, …, O). The scale is applied
    to the small (P, N, R) intermediate, never to a factor. ``consume``: ``second`` is a fresh
    factor nobody else holds, and at rank 1 with one row per member the term is written into it
    (the same products, without a (P, O) temporary).
    """
    p = x.shape[0]
    x3 = x.reshape(p, -1, x.shape[-1])                          # (P, N, I)
    if first.shape[-1] == 1:                                    # rank 1: row-wise dots, then outer products
        u = np.matmul(x3, first) * scale[:, None, None]         # (P, N, 1): one GEMV per member
        if consume and x3.shape[1] == 1 and second.flags.writeable and second.dtype == np.result_type(u, second):
            out = np.multiply(u, second[:, None, :, 0], out=second[:, None, :, 0])   # (P, 1, O), in the factor
        else:
            out = u * second[:, None, :, 0]                     # (P, N, O)
    else:
        u = np.matmul(x3, first) * scale[:, None, None]         # (P, N, R)
        out = np.matmul(u, second.transpose(0, 2, 1))           # (P, N, O)
    return out.reshape(x.shape[:-1] + (second.shape[1],))
