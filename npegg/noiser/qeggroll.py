"""QEggRoll: the integer noiser of nano-egg. int8 low-rank perturbations and a ±1 vote update.

Noise. For a leaf with key k, member n at epoch e, the source (``frozen_noiser_params["noise"]``,
by default ``Int8NoiseTable``) returns unit int8 factors A (a, r), B (b, r) for MM and EMB
leaves, or int32 full-rank noise E for PARAM leaves (a product of two table entries). The
antithetic sign s = +1 for even n, −1 for odd n goes on A (or E) only, and every perturbation is
floor-shifted by FIXED_POINT + sigma_shift before it is added (docs/int8-spec.md §2.2–§2.4, §6)::

    do_mm:               y = clip(⌊(x Wᵀ + ⌊x B (sA)ᵀ / 2^(4+σ)⌋) / (16·⌊√I⌋)⌋)
    do_emb:              y = clip(E[t] + ⌊(sA)[t] Bᵀ / 2^(4+σ)⌋)
    get_noisy_standard:  y = clip(p + ⌊sE / 2^(4+σ)⌋)

Update (docs/int8-spec.md §8). ``convert_fitnesses`` gives one fitness per antithetic pair, fᵢ = sign(R₂ᵢ −
R₂ᵢ₊₁) (or the reference's quirky normalized variant). ``do_updates`` keeps the even members of
the iterinfos (``[::2]``, sign +1), accumulates per leaf (and per layer of a stacked leaf)

    Z = Σᵢ fᵢ Aᵢ Bᵢᵀ   or   Σᵢ fᵢ Eᵢ           (use_clt; else with sgn() of the factors)

in member chunks, so memory stays bounded, and moves each entry by ±1 where 16·|Z| ≥ τ =
threshold·⌊√N⌋·(256 if use_clt else 1), then clips to ±127. The threshold is the z-test
threshold of significance α (``npegg.int8.qes``): taken from ``noiser_params["update_threshold"]``
when set, otherwise from α and the epoch (constant α < 1, or the decaying schedule when α > 1).
Against the textbook estimate ĝ = (1/(Nσ)) Σᵢ fᵢ εᵢ, Z is N·σ·ĝ up to the fixed-point scale,
and the step is sign(ĝ) wherever ĝ is significant: the update ascends the fitness.

Parameters stay int8 throughout. ``do_Tmm`` is not defined for the int8 path (the reference
raises too).

Mirrors: nano-egg run.py QEggRoll (init_noiser, do_mm, do_emb, get_noisy_standard,
convert_fitnesses, do_updates, get_lora_update_params, get_nonlora_update_params).
"""
from __future__ import annotations

import numpy as np

from ..int8 import intmm, qes
from ..int8.fixedpoint import FIXED_POINT
from ..models.base_model import EMB_PARAM, EXCLUDED, MM_PARAM, PARAM
from ..noise import Int8NoiseTable, parse_iterinfo
from ..tree import tree_items, tree_map_with_path
from .base_noiser import Noiser
from .eggroll import signs  # the antithetic sign, shared with the float noiser

_CHUNK_BYTES = 32 << 20  # noise rebuilt per update chunk stays below this



def get_lora_update_params(frozen, iterinfo, shape, key) -> tuple[np.ndarray, np.ndarray]:
    """Signed factors of every member: A = s·A_unit (P, a, r) int8 and B (P, b, r) int8.

    The sign stays in int8: the tables never hold −128, so s·A cannot wrap.
    """
    epoch, members = parse_iterinfo(*iterinfo)
    a_unit, b_unit = frozen["noise"].lowrank(key, epoch, members, shape, frozen["rank"], frozen["noise_reuse"])
    return a_unit * signs(members)[:, None, None], b_unit


def get_nonlora_update_params(frozen, iterinfo, shape, key) -> np.ndarray:
    """Signed full-rank noise of every member: s·E (P, *shape) int32."""
    epoch, members = parse_iterinfo(*iterinfo)
    e = np.asarray(frozen["noise"].full(key, epoch, members, shape, frozen["noise_reuse"]), dtype=np.int32)
    return e * signs(members).astype(np.int32).reshape((-1,) + (1,) * len(shape))


def _check_threshold(threshold):
    """None or an integer: the reference's thresholds are int32; a float one would compare in float32."""
    if threshold is not None and not isinstance(threshold, (int, np.integer)):
        raise ValueError(f"update_threshold must be None or an integer, got {threshold!r}")
    return threshold


class QEggRoll(Noiser):
    """Integer low-rank antithetic ES: perturbations ⌊s A Bᵀ / 2^(4+σ)⌋ on int8 weights, one fitness
    fᵢ = sign(R₂ᵢ − R₂ᵢ₊₁) per pair, and θ ← clip(θ + sign(Z) · [16·|Z| ≥ τ], ±127) with
    Z = Σᵢ fᵢ Aᵢ Bᵢᵀ over the even members (every formula and its quirks are at the top of this module).
    Mirrors: nano-egg run.py QEggRoll."""

    @classmethod
    def init_noiser(cls, params, sigma_shift=4, update_threshold=None, *args, noise=None, noise_seed=0,
                    noise_log2_size=25, noise_reuse=1, rank=1, use_clt=True, fast_fitness=True,
                    alpha=4.0, alpha_decay_timestep=1000, update_chunk=None, **kwargs):
        """Validate settings and build (frozen_noiser_params, noiser_params).

        sigma_shift ∈ [−4, 27]: perturbations are shifted right by 4 + sigma_shift bits (0..31).
        update_threshold: a fixed integer threshold, or None for the α schedule (alpha, alpha_decay_timestep;
        docs/int8-spec.md §8.3). noise: a source with ``lowrank``/``full`` (default
        ``Int8NoiseTable(noise_seed, log2_size=noise_log2_size)``, 2²⁵ entries = 32 MiB).
        noise_reuse ≥ 0 (0: the same noise every epoch). update_chunk: members per update
        chunk (default: sized by a 32 MiB noise budget); it never changes the result.
        Defaults follow run.py's command line (use_clt=True, noise_reuse=1, alpha=4).
        ``dtype`` (the reference's keyword) may only be "int8"; other extra arguments raise, so
        a misspelt setting cannot silently fall back to a default.
        """
        dtype = kwargs.pop("dtype", "int8")
        if dtype != "int8":
            raise ValueError(f"QEggRoll is the int8 noiser; dtype must be 'int8', got {dtype!r}")
        if args or kwargs:
            raise ValueError(f"unknown QEggRoll.init_noiser arguments: {list(args) + sorted(kwargs)}")
        if not (isinstance(sigma_shift, (int, np.integer)) and -4 <= sigma_shift <= 27):
            raise ValueError(f"sigma_shift must be an integer in [-4, 27] (a right shift by 4 + sigma_shift "
                             f"bits, 0..31), got {sigma_shift!r}")
        _check_threshold(update_threshold)
        if not (isinstance(rank, (int, np.integer)) and rank >= 1):
            raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
        if not (isinstance(noise_reuse, (int, np.integer)) and noise_reuse >= 0):
            raise ValueError(f"noise_reuse must be an integer >= 0, got {noise_reuse!r}")
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        if not (isinstance(alpha_decay_timestep, (int, np.integer)) and alpha_decay_timestep >= 1):
            raise ValueError(f"alpha_decay_timestep must be an integer >= 1, got {alpha_decay_timestep!r}")
        if update_chunk is not None and not (isinstance(update_chunk, (int, np.integer)) and update_chunk >= 1):
            raise ValueError(f"update_chunk must be None or an integer >= 1, got {update_chunk!r}")
        frozen = {"noise_reuse": int(noise_reuse), "rank": int(rank), "use_clt": bool(use_clt),
                  "fast_fitness": bool(fast_fitness), "alpha": float(alpha),
                  "alpha_decay_timestep": int(alpha_decay_timestep), "update_chunk": update_chunk,
                  "noise": noise if noise is not None else Int8NoiseTable(seed=noise_seed, log2_size=noise_log2_size)}
        return frozen, {"sigma_shift": int(sigma_shift),
                        "update_threshold": None if update_threshold is None else int(update_threshold)}

    # -- perturbed forward ---------------------------------------------------------------------------
    @classmethod
    def do_mm(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, x):
        """Scaled int8 matmul; W (O, I) int8, x (P, …, I) int8 value × 16 → (P, …, O) int8."""
        return cls._lowrank(intmm.do_mm, frozen_noiser_params, noiser_params, param, base_key, iterinfo, x)

    @classmethod
    def do_Tmm(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, x):
        raise NotImplementedError("QEggRoll has no transposed matmul (nor has the reference); "
                                  "store int8 weights as (out, in) and use do_mm")

    @classmethod
    def do_emb(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo, tokens):
        """Embedding rows; E (V, H) int8, tokens (P, …) → (P, …, H) int8 value × 16."""
        return cls._lowrank(intmm.do_emb, frozen_noiser_params, noiser_params, param, base_key, iterinfo, tokens)

    @classmethod
    def _lowrank(cls, op, frozen_noiser_params, noiser_params, param, base_key, iterinfo, x):
        """op(param, x) for the plain model, else op(param, x, sA, B, sigma_shift) with every member's
        signed int8 factors (``intmm.do_mm`` / ``intmm.do_emb``)."""
        if iterinfo is None:
            return op(param, x)
        a, b = get_lora_update_params(frozen_noiser_params, iterinfo, param.shape, base_key)
        return op(param, x, a, b, noiser_params["sigma_shift"])

    @classmethod
    def lowrank_noise(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo):
        """What ``do_mm`` / ``do_emb`` add for every member, to be gathered once for many steps:
        (sA (P, a, r) int8, B (P, b, r) int8, shift 4 + σ) for a leaf of shape (a, b), or None
        for the plain model (``models.egg_fused.bind``)."""
        if iterinfo is None:
            return None
        a, b = get_lora_update_params(frozen_noiser_params, iterinfo, np.shape(param), base_key)
        return a, b, FIXED_POINT + int(noiser_params["sigma_shift"])

    @classmethod
    def get_noisy_standard(cls, frozen_noiser_params, noiser_params, param, base_key, iterinfo):
        """p unperturbed, else clip(p + ⌊sE / 2^(4+σ)⌋): (P, *p.shape) int8."""
        if iterinfo is None:
            return param
        e = get_nonlora_update_params(frozen_noiser_params, iterinfo, param.shape, base_key)
        return intmm.get_noisy_standard(param, e, noiser_params["sigma_shift"])

    # -- fitness and update -------------------------------------------------------------------------
    @classmethod
    def convert_fitnesses(cls, frozen_noiser_params, noiser_params, raw_scores, num_episodes_list=None):
        """One int8 fitness per antithetic pair: (P,) int32 raw scores → (P/2,) int8.

        ``num_episodes_list`` is accepted and unused, as in the reference.
        """
        raw = np.asarray(raw_scores)
        if raw.ndim != 1 or raw.size % 2:   # the reference's reshape(-1, 2) crashes on an odd count
            raise ValueError(f"raw_scores must be a 1-D array of even length (antithetic pairs), got {raw.shape}")
        if frozen_noiser_params["fast_fitness"]:
            return qes.fitness_sign(raw)
        return qes.fitness_normalized(raw)

    @classmethod
    def threshold(cls, frozen_noiser_params, noiser_params, epoch: int) -> int:
        """The update threshold in force at ``epoch``: the fixed one, or from the α schedule."""
        if noiser_params.get("update_threshold") is not None:
            return int(_check_threshold(noiser_params["update_threshold"]))
        a = qes.alpha_schedule(frozen_noiser_params["alpha"], epoch, frozen_noiser_params["alpha_decay_timestep"])
        return int(qes.update_threshold(a))

    @classmethod
    def votes(cls, frozen_noiser_params, noiser_params, params, base_keys, fitnesses, iterinfos, es_map):
        """The tree of Z (int32, leaf shapes) from the even members; EXCLUDED leaves get None."""
        epoch, members = cls._even_members(fitnesses, iterinfos)
        f = np.asarray(fitnesses).astype(np.int8)
        keys = dict(tree_items(base_keys))
        kinds = dict(tree_items(es_map))

        def vote(path, p):
            kind = int(kinds[path])
            if kind == EXCLUDED:
                return None
            if kind not in (PARAM, MM_PARAM, EMB_PARAM):
                raise ValueError(f"unknown es_map code {kind} at {path}")
            k = np.asarray(keys[path])
            if k.ndim == 2:  # a per-layer stack: one key per layer
                return np.stack([cls._leaf_vote(frozen_noiser_params, np.shape(p)[1:], k[l], f, epoch, members, kind)
                                 for l in range(k.shape[0])])
            return cls._leaf_vote(frozen_noiser_params, np.shape(p), k, f, epoch, members, kind)
        return tree_map_with_path(vote, params)

    @classmethod
    def do_updates(cls, frozen_noiser_params, noiser_params, params, base_keys, fitnesses, iterinfos, es_map):
        """±1 steps where the vote is significant; params stay int8 in [−127, 127]."""
        if not frozen_noiser_params["fast_fitness"]:
            raise NotImplementedError("the reference's update crashes with fast_fitness=False "
                                      "(NameError in _common_update); no semantics to reproduce")
        z_tree = cls.votes(frozen_noiser_params, noiser_params, params, base_keys, fitnesses, iterinfos, es_map)
        epoch, members = cls._even_members(fitnesses, iterinfos)
        thr = cls.threshold(frozen_noiser_params, noiser_params, epoch)
        n = members.size
        zs = dict(tree_items(z_tree))

        def step(path, p):
            z = zs[path]
            if z is None:
                return p
            return qes.threshold_step(p, z, thr, n, frozen_noiser_params["use_clt"])
        return noiser_params, tree_map_with_path(step, params)

    # -- helpers ------------------------------------------------------------------------------------
    @classmethod
    def _even_members(cls, fitnesses, iterinfos):
        """(epoch, members[::2]) after checking one fitness per antithetic pair."""
        epochs, members = np.asarray(iterinfos[0]), np.asarray(iterinfos[1])
        epoch, members = parse_iterinfo(epochs[::2] if epochs.ndim else epochs, members[::2])
        if np.shape(fitnesses) != members.shape:
            raise ValueError(f"expected {members.size} fitnesses (one per pair), got shape {np.shape(fitnesses)}")
        # Other values make the reference's f·A product wrap in int8 or not depending on the array's
        # dtype; the update is defined for the sign fitness only (docs/reference-differences.md).
        if not np.isin(np.asarray(fitnesses), (-1, 0, 1)).all():
            raise ValueError("fitnesses must be sign fitnesses in {-1, 0, 1} (convert_fitnesses with "
                             f"fast_fitness=True), got values {np.unique(np.asarray(fitnesses))[:8].tolist()}")
        return epoch, members

    @classmethod
    def _leaf_vote(cls, frozen, shape, key, f, epoch, members, kind):
        """Z for one (unstacked) leaf, summed over member chunks (integer sums: order-free)."""
        per_member = int(np.prod(shape)) * 8 if kind == PARAM else (shape[0] + shape[1]) * frozen["rank"]
        step = frozen["update_chunk"] or max(1, _CHUNK_BYTES // max(1, per_member))
        z = np.zeros(shape, np.int64)
        for lo in range(0, members.size, step):
            info = (epoch, members[lo:lo + step])
            if kind == PARAM:
                e = get_nonlora_update_params(frozen, info, shape, key)            # (c, *shape) int32
                z += qes.vote_full(f[lo:lo + step], e, frozen["use_clt"])
            else:
                a, b = get_lora_update_params(frozen, info, shape, key)            # (c, a, r), (c, b, r)
                z += qes.vote_lowrank(f[lo:lo + step], a, b, frozen["use_clt"])
        return qes.wrap32(z)                                                       # int32, as the reference
