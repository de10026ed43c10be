"""The update summed over distinct noise indices equals the per-member sum (issue 21).

Members 2q and 2q + 1 draw the same unit noise from a ``NoiseTable`` (its start index hashes
q = n >> 1), so ``EggRoll._leaf_grad`` sums each index's weights first and runs its GEMM over the
distinct indices only: Σₙ wₙ sₙ c εₙ = Σ_q (Σ_{n>>1=q} wₙ sₙ c) ε_q. The slow twin is the same
noise with ``pairs_share_noise = False``, which keeps the per-member sum.

**The bound.** Write S = (1/√N) Σₙ |w′ₙ| |Aₙ| |Bₙ|ᵀ (MM/EMB leaves, w′ₙ = wₙ sₙ σ/√r, and |Aₙ|
masked by mₙ with ``rows_seen``) or S = (1/√N) Σₙ |wₙ| σ|eₙ| (PARAM leaves), in float64. The
per-member path rounds each scaled factor once and sums N·R products (γ_{NR+2}·S from the exact
sum of its own rounded weights); the paired path rounds each combined weight once more, scales
once and sums Q·R ≤ N·R products (γ_{QR+3}·S, since |Σ w′| ≤ Σ |w′|); the weights w′ₙ and the
scaled noise fl(σ·e) are the same numbers in both. Each result is then rounded to the leaf's
dtype (u·|G| each). So, element by element,

    |G_paired − G_member| ≤ (γ_{NR+2} + γ_{QR+3}) · S + u · (|G_paired| + |G_member|),

γ_k = k·u/(1 − k·u), u the leaf dtype's unit roundoff. Where every product and sum is exact (a
table of small integers, integer fitnesses, σ/√r = 1) the two are the same bits.
"""
import numpy as np
import pytest

from npegg import keys as K
from npegg.models.common import EMB_PARAM, MM_PARAM, PARAM
from npegg.noise import InjectedNoise, NoiseTable
from npegg.noiser import AltEggRoll, EggRoll, EggRollBS, OpenES, Sparse
from npegg.noiser.eggroll import combine_by_noise_index, unit_lora

NOISERS = [EggRoll, AltEggRoll, EggRollBS, OpenES, Sparse]


class PerMemberTable(NoiseTable):
    """The same table, but the update may not assume partners share noise: the per-member sum."""
    pairs_share_noise = False


class IntegerTable(NoiseTable):
    """A table of integers in [−3, 3] (entry i: (i·7919 mod 7) − 3): every product and sum below is exact."""

    def _build(self):
        return ((np.arange(self.size, dtype=np.int64) * 7919) % 7 - 3).astype(np.float32)


class IntegerPerMember(IntegerTable):
    pairs_share_noise = False


def _gamma(k, u):
    return k * u / (1 - k * u)


def _frozen(noiser, table, rank, sigma, pop):
    kw = {"group_size": pop} if noiser is EggRollBS else {}
    rank = 1 if noiser is Sparse else rank                                    # Sparse accepts rank 1 only
    return noiser.init_noiser({"w": np.zeros((2, 2))}, sigma, 0.1, rank=rank, noise=table, **kw)


def _grads(noiser, table, kind, shape, members, f, rank=1, sigma=0.3, dtype=np.float32, rows=None, pop=None):
    frozen, nparams = _frozen(noiser, table, rank, sigma, pop or 2 * (int(members.max()) // 2 + 1))
    params, keys, es_map = {"w": np.zeros(shape, dtype)}, {"w": K.fold_in(K.key(4), 9)}, {"w": kind}
    g = noiser.estimate_grads(frozen, nparams, params, keys, f, (3, members), es_map,
                              rows_seen=None if rows is None else {"w": rows})
    return g["w"], frozen, keys["w"]


def _bound(noiser, frozen, key, kind, shape, members, f, sigma, rows, g1, g2):
    """(γ_{NR+2} + γ_{QR+3})·S + u·(|G₁| + |G₂|), the module docstring's bound, float64."""
    u = np.finfo(g1.dtype).eps / 2
    n, q = members.size, np.unique(members >> 1).size
    scale = np.abs(np.asarray(f, np.float64)) / np.sqrt(n)                       # (N,)
    if kind == PARAM:
        e = frozen["noise"].full(key, 3, members, shape, frozen["noise_reuse"]).astype(np.float64)
        s = np.tensordot(scale, sigma * np.abs(e), axes=(0, 0))
        r = 1
    else:
        a, b, c = unit_lora(frozen, sigma, (3, members), shape, key)
        r = a.shape[-1]
        a = np.abs(a.astype(np.float64))
        if noiser is AltEggRoll:
            a, b = np.sign(a), np.sign(b)
        if rows is not None:
            a = a * rows[:, :, None]
        s = np.einsum("n,nar,nbr->ab", scale * np.abs(c), a, np.abs(b.astype(np.float64)))
    return (_gamma(n * r + 2, u) + _gamma(q * r + 3, u)) * s + u * (np.abs(g1) + np.abs(g2))


MEMBER_SETS = {
    "population": np.arange(16),
    "odd population": np.arange(15),
    "worker subset": np.arange(5, 12),                       # starts and ends inside a pair
    "shuffled": np.array([7, 2, 3, 6, 0, 1, 5, 4, 9]),
    "repeats": np.array([0, 1, 1, 2, 2, 3, 8]),
    "no partners": np.array([0, 3, 4, 7, 9]),
}


@pytest.mark.parametrize("noiser", NOISERS, ids=lambda n: n.__name__)
@pytest.mark.parametrize("kind", [MM_PARAM, EMB_PARAM, PARAM], ids=["MM", "EMB", "PARAM"])
@pytest.mark.parametrize("name", list(MEMBER_SETS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_paired_update_equals_the_per_member_sum_within_the_rounding_bound(noiser, kind, name, dtype):
    """Pairs, odd and partial member sets, repeats, every noiser: within the derived bound."""
    members = MEMBER_SETS[name]
    rng = np.random.default_rng(members.size)
    f = rng.standard_normal(members.size)
    shape, rank, sigma = ((6,) if kind == PARAM else (9, 5)), 2, 0.3
    pop = 16 if noiser is EggRollBS else None
    paired, frozen, key = _grads(noiser, NoiseTable(seed=2, log2_size=12), kind, shape, members, f, rank, sigma,
                                 dtype, pop=pop)
    alone, _, _ = _grads(noiser, PerMemberTable(seed=2, log2_size=12), kind, shape, members, f, rank, sigma,
                         dtype, pop=pop)
    assert paired.dtype == dtype and paired.shape == shape
    if kind != PARAM and noiser in (OpenES, Sparse):                 # their own matrix sums: per member both times
        assert np.array_equal(paired, alone)
        return
    bound = _bound(noiser, frozen, key, kind, shape, members, f, sigma, None, paired, alone)
    assert np.all(np.abs(paired.astype(np.float64) - alone) <= bound)
    assert np.abs(paired).max() > 100 * bound.max()                  # the bound is far below the values


@pytest.mark.parametrize("noiser", [EggRoll, AltEggRoll, EggRollBS], ids=lambda n: n.__name__)
@pytest.mark.parametrize("name", ["population", "odd population", "shuffled"])
def test_paired_update_with_rows_seen_equals_the_masked_per_member_sum(noiser, name):
    """EMB leaves with rows_seen: partners' different masks are combined row by row, within the bound."""
    members = MEMBER_SETS[name]
    rng = np.random.default_rng(1)
    f, rows = rng.standard_normal(members.size), rng.random((members.size, 9)) < 0.5   # (N,), (N, V)
    pop = 16 if noiser is EggRollBS else None
    paired, frozen, key = _grads(noiser, NoiseTable(seed=3, log2_size=12), EMB_PARAM, (9, 4), members, f,
                                 rows=rows, pop=pop)
    alone, _, _ = _grads(noiser, PerMemberTable(seed=3, log2_size=12), EMB_PARAM, (9, 4), members, f,
                         rows=rows, pop=pop)
    bound = _bound(noiser, frozen, key, EMB_PARAM, (9, 4), members, f, 0.3, rows, paired, alone)
    assert np.all(np.abs(paired.astype(np.float64) - alone) <= bound)
    unmasked, _, _ = _grads(noiser, NoiseTable(seed=3, log2_size=12), EMB_PARAM, (9, 4), members, f, pop=pop)
    assert np.abs(unmasked - paired).max() > 100 * bound.max()        # the masks did change the estimate


@pytest.mark.parametrize("noiser", NOISERS, ids=lambda n: n.__name__)
@pytest.mark.parametrize("kind", [MM_PARAM, EMB_PARAM, PARAM], ids=["MM", "EMB", "PARAM"])
@pytest.mark.parametrize("name", ["population", "odd population", "worker subset", "repeats"])
def test_paired_update_is_the_same_bits_where_the_arithmetic_is_exact(noiser, kind, name):
    """Integer noise in [−3, 3], integer fitnesses, σ/√r = 1: every product and partial sum is an
    integer below 2²⁴, so both sums are exact and equal bit for bit (and not all zero)."""
    members = MEMBER_SETS[name]
    f = np.random.default_rng(0).integers(-4, 5, members.size).astype(np.float64)
    shape, rank = ((6,) if kind == PARAM else (9, 5)), (1 if kind == PARAM else 4)
    sigma = 1.0 if kind == PARAM else 2.0                                     # σ/√r = 1 on MM/EMB leaves
    pop = 16 if noiser is EggRollBS else None
    paired, _, _ = _grads(noiser, IntegerTable(log2_size=12), kind, shape, members, f, rank, sigma, pop=pop)
    alone, _, _ = _grads(noiser, IntegerPerMember(log2_size=12), kind, shape, members, f, rank, sigma, pop=pop)
    assert np.array_equal(paired, alone) and np.any(paired != 0)


def test_combined_weights_do_not_depend_on_member_order_or_the_fast_path():
    """Ascending whole pairs take a fast path; any other order the general one: the same sums, bit for bit."""
    rng = np.random.default_rng(5)
    members = np.arange(20, 40)
    w = rng.standard_normal(members.size).astype(np.float32)
    rows = rng.random((members.size, 7)) < 0.6
    perm = rng.permutation(members.size)
    for r in (None, rows):
        heads, wq = combine_by_noise_index(members, w, r)
        heads2, wq2 = combine_by_noise_index(members[perm], w[perm], None if r is None else r[perm])
        assert np.array_equal(heads >> 1, heads2 >> 1) and np.array_equal(wq, wq2) and wq.dtype == np.float32
    assert np.array_equal(combine_by_noise_index(members, w)[1], (w[0::2].astype(np.float64) + w[1::2]).astype(np.float32))


def test_pairing_only_where_partners_share_the_update_factors():
    """On for EggRoll, AltEggRoll, EggRollBS; PARAM leaves only for OpenES and Sparse (they sum their own
    way); off for InjectedNoise (partners' records may differ) and a subclass with its own factors."""
    table = NoiseTable(seed=1, log2_size=12)

    class OwnFactors(EggRoll):
        @classmethod
        def _update_factors(cls, frozen, sigma, info, shape, key):
            a, b, scale = unit_lora(frozen, sigma, info, shape, key)
            return a + info[1][:, None, None], b, scale                       # depends on n, not n >> 1

    for noiser, mm in ((EggRoll, True), (AltEggRoll, True), (EggRollBS, True), (OpenES, False), (Sparse, False),
                       (OwnFactors, False)):
        frozen, _ = _frozen(noiser, table, 1, 0.1, 8)
        assert noiser._combines_pairs(frozen, MM_PARAM) is mm and noiser._combines_pairs(frozen, EMB_PARAM) is mm
        assert noiser._combines_pairs(frozen, PARAM)
        injected = {**frozen, "noise": InjectedNoise({})}
        assert not noiser._combines_pairs(injected, PARAM) and not noiser._combines_pairs(injected, MM_PARAM)


@pytest.mark.parametrize("rank", [1, 3])
def test_paired_update_is_the_same_bits_from_the_population_cache_and_from_a_fresh_draw(rank):
    """One process gathered the population's noise, a worker only its own members, a third table
    caches nothing: the update draws one member per pair afresh in each, and the bits are the same
    (workers change nothing but speed)."""
    members, shape = np.arange(128), (64, 48)
    f = np.random.default_rng(2).standard_normal(members.size)
    gathered = NoiseTable(seed=6)
    gathered.gather_for(members)
    worker = NoiseTable(seed=6)
    worker.gather_for(np.arange(32, 64))
    for kind in (MM_PARAM, PARAM):
        shp = shape if kind == MM_PARAM else (48,)
        g1, _, _ = _grads(EggRoll, gathered, kind, shp, members, f, rank)
        g2, _, _ = _grads(EggRoll, worker, kind, shp, members, f, rank)
        g3, _, _ = _grads(EggRoll, NoiseTable(seed=6, cache_bytes=0), kind, shp, members, f, rank)
        assert np.array_equal(g1, g2) and np.array_equal(g1, g3)
