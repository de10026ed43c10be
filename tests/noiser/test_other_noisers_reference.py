"""AltEggRoll, EggRollBS and Sparse against the official JAX code, run side by side.

The reference modules are imported from ``<repo>/../shared/reference-impl/HyperscaleES/src`` (GPL:
run here, never copied into npegg; ``NPEGG_SHARED`` overrides where shared/ is) with jax and optax
(the ``reference`` extra). Each case draws the reference's own noise (``jax.random`` under
``fold_in(fold_in(key, epoch), member // 2)``) and injects the same unit factors into npegg, so
both compute the same formula on the same numbers; what remains is float32 rounding in another
order. Tolerances are the rounding-error bound of the sums involved (Higham: a float32 sum of m
products is within γₘ = m·2⁻²⁴ of the exact value, relative to the sum of absolute products),
doubled because both sides round, and written beside each assert.
"""
import importlib
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from npegg.models.common import EMB_PARAM, MM_PARAM, PARAM
from npegg.noise import InjectedNoise
from npegg.noiser import AltEggRoll, EggRollBS, Sparse

jax = pytest.importorskip("jax", reason="jax is in the `reference` extra (not installable with NumPy 1.23.2; "
                                        ".ci/run installs it in the main run)")
jnp = pytest.importorskip("jax.numpy")
optax = pytest.importorskip("optax")

SHARED = Path(os.environ.get("NPEGG_SHARED", Path(__file__).resolve().parents[3] / "shared"))
SRC = SHARED / "reference-impl" / "HyperscaleES" / "src"
U = 2.0 ** -24                                                       # float32 unit roundoff


def reference(module: str):
    """hyperscalees.noiser.<module>, imported without running the package's __init__ (which pulls in
    every model and environment): stub parent packages point the import system at the files."""
    if not (SRC / "hyperscalees" / "noiser" / f"{module}.py").is_file():
        pytest.fail(f"the reference code is not at {SRC} (CI puts shared/ beside the clone; "
                    f"set NPEGG_SHARED to its path)")
    for name, path in (("hyperscalees", SRC / "hyperscalees"), ("hyperscalees.noiser", SRC / "hyperscalees" / "noiser")):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(path)]
            sys.modules[name] = pkg
    return importlib.import_module(f"hyperscalees.noiser.{module}")


def _pair_key(key, epoch, member, noise_reuse):
    te = 0 if noise_reuse == 0 else epoch // noise_reuse
    return jax.random.fold_in(jax.random.fold_in(key, te), member // 2)


class ReferenceNoise(InjectedNoise):
    """The reference's unit noise for any (key, member), drawn with jax.random on request (and kept:
    a pure function of its arguments)."""

    def __init__(self):
        super().__init__({})
        self._drawn = {}

    def _normal(self, key, epoch, member, shape, noise_reuse):
        at = (np.asarray(key).tobytes(), 0 if noise_reuse == 0 else epoch // noise_reuse, member // 2, tuple(shape))
        if at not in self._drawn:
            self._drawn[at] = np.asarray(jax.random.normal(_pair_key(jnp.asarray(key), epoch, member, noise_reuse),
                                                           shape, jnp.float32))
        return self._drawn[at]

    def lowrank(self, key, epoch, members, shape, rank, noise_reuse):
        a, b = shape
        z = np.stack([self._normal(key, epoch, int(n), (a + b, rank), noise_reuse) for n in members])
        return z[:, b:], z[:, :b]                                        # A (P, a, r), B (P, b, r): B first

    def full(self, key, epoch, members, shape, noise_reuse):
        return np.stack([self._normal(key, epoch, int(n), tuple(shape), noise_reuse) for n in members])

    def sparse(self, key, epoch, members, shape, k, noise_reuse):
        """As the reference's get_sparse_update_params: split, uniform positions, normal values."""
        a, b = shape
        vals, rows, cols = [], [], []
        for n in members:
            k1, k2 = jax.random.split(_pair_key(jnp.asarray(key), epoch, int(n), noise_reuse), 2)
            joint = np.asarray(jnp.floor(jax.random.uniform(k1, (k,)) * (a * b)).astype(jnp.int32))
            rows.append(joint // b)
            cols.append(joint % b)
            vals.append(np.asarray(jax.random.normal(k2, (k,), jnp.float32)))
        return np.stack(vals), np.stack(rows), np.stack(cols)


CASES = [dict(shape=(5, 3), rank=1, pop=8, epoch=3, noise_reuse=2, sigma=0.2),
         dict(shape=(4, 6), rank=2, pop=6, epoch=0, noise_reuse=0, sigma=0.05),
         dict(shape=(7, 7), rank=3, pop=12, epoch=5, noise_reuse=1, sigma=0.5)]
NOISERS = {"alteggroll": (AltEggRoll, "EggRoll"), "eggroll_baseline_subtraction": (EggRollBS, "EggRollBS"),
           "sparse": (Sparse, "Sparse")}


def _setup(module, case, lr=0.3):
    ours, name = NOISERS[module]
    ref_cls = getattr(reference(module), name)
    kw = dict(noise_reuse=case["noise_reuse"])
    if ours is EggRollBS:
        kw["group_size"] = case["pop"]
    if ours is not Sparse:
        kw["rank"] = case["rank"]
    rng = np.random.default_rng(case["pop"] + case["shape"][0])
    params = {"w": rng.standard_normal(case["shape"]).astype(np.float32),
              "b": rng.standard_normal(case["shape"][0]).astype(np.float32),
              "e": rng.standard_normal(case["shape"]).astype(np.float32)}
    keys = {k: np.asarray(jax.random.PRNGKey(i + 17)) for i, k in enumerate(sorted(params))}
    ref_frozen, ref_state = ref_cls.init_noiser(jax.tree.map(jnp.asarray, params), case["sigma"], lr, **kw)
    frozen, state = ours.init_noiser(params, case["sigma"], lr, noise=ReferenceNoise(), update_emb=False, **kw)
    return ours, ref_cls, ref_frozen, ref_state, frozen, state, params, keys, rng


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c["shape"])) + f"_r{c['rank']}")
@pytest.mark.parametrize("module", list(NOISERS))
def test_forward_matches_the_reference(module, case):
    """do_mm (and do_Tmm, get_noisy_standard) per member with one input vector, as the reference's
    models call them under vmap. Bound: the products x·W and x·(noise) are sums of I + r + 2 terms,
    so |Δ| ≤ 2·(I + r + 2)·u·(|x||W|ᵀ + |x||noise|ᵀ) (the noise term bounded by |W| + |ε| entrywise)."""
    ours, ref, rf, rs, frozen, state, params, keys, rng = _setup(module, case)
    w, (o, i), p = params["w"], case["shape"], case["pop"]
    members = np.arange(p)
    x = rng.standard_normal((p, i)).astype(np.float32)
    got = ours.do_mm(frozen, state, w, keys["w"], (case["epoch"], members), x)               # (P, O)
    eye = np.broadcast_to(np.eye(i, dtype=np.float32), (p, i, i))
    eps = ours.do_mm(frozen, state, np.zeros_like(w), keys["w"], (case["epoch"], members), eye)  # (P, I, O): εᵀ
    bound_w = 2 * (i + case["rank"] + 2) * U * (np.abs(x) @ np.abs(w).T + np.einsum("pi,pio->po", np.abs(x), np.abs(eps)))
    for n in members:
        want = np.asarray(ref.do_mm(rf, rs, jnp.asarray(w), jnp.asarray(keys["w"]), (jnp.int32(case["epoch"]), n), jnp.asarray(x[n])))
        assert np.all(np.abs(got[n] - want) <= bound_w[n] + 1e-30), (n, np.abs(got[n] - want).max())
    bias = params["b"]
    noisy = ours.get_noisy_standard(frozen, state, bias, keys["b"], (case["epoch"], members))
    for n in members:
        want = np.asarray(ref.get_noisy_standard(rf, rs, jnp.asarray(bias), jnp.asarray(keys["b"]), (jnp.int32(case["epoch"]), n)))
        assert np.all(np.abs(noisy[n] - want) <= 2 * U * np.abs(want))                    # one product, one sum
    if ours is Sparse:
        return                                                    # do_Tmm: test_sparse_reference_do_tmm_swaps_its_indices
    x_t = rng.standard_normal((p, i)).astype(np.float32)
    w_t = rng.standard_normal((i, o)).astype(np.float32)
    got_t = ours.do_Tmm(frozen, state, w_t, keys["e"], (case["epoch"], members), x_t)
    eps_t = ours.do_Tmm(frozen, state, np.zeros_like(w_t), keys["e"], (case["epoch"], members), eye)
    bound_t = 2 * (i + case["rank"] + 2) * U * (np.abs(x_t) @ np.abs(w_t) + np.einsum("pi,pio->po", np.abs(x_t), np.abs(eps_t)))
    for n in members:
        want = np.asarray(ref.do_Tmm(rf, rs, jnp.asarray(w_t), jnp.asarray(keys["e"]), (jnp.int32(case["epoch"]), n), jnp.asarray(x_t[n])))
        assert np.all(np.abs(got_t[n] - want) <= bound_t[n] + 1e-30), (n, np.abs(got_t[n] - want).max())


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c["shape"])) + f"_r{c['rank']}")
@pytest.mark.parametrize("module", list(NOISERS))
def test_update_matches_the_reference(module, case, capsys):
    """do_updates with SGD (EggRollBS: clipped to norm 1 first) from the same fitnesses: MM, PARAM
    and EMB leaves (EMB: both leave it, update_emb=False). Bound per entry: G is a float32 sum of
    N·r products (AltEggRoll: of ±1 signs; Sparse: of k scatter-adds per member), so
    |ΔG| ≤ 2·(N·r + 4)·u·(1/√N)·Σₙ|fₙ||Dₙ| (Dₙ the update's matrix), and the step lr·G adds
    2·u·(|p| + lr|G|); the clip's norm and division add 4·u·lr·|G| relative."""
    ours, ref, rf, rs, frozen, state, params, keys, rng = _setup(module, case)
    p = case["pop"]
    members = np.arange(p)
    f = rng.standard_normal(p).astype(np.float32)
    if ours is EggRollBS:
        f[:2] = 0.0                                                # what its convert_fitnesses gives members 0, 1
    es_map = {"w": MM_PARAM, "b": PARAM, "e": EMB_PARAM}
    info = (case["epoch"], members)
    g = ours.estimate_grads(frozen, state, params, keys, f, info, es_map)
    _, new = ours.do_updates(frozen, state, params, keys, f, info, es_map)
    typed = {k: jax.random.wrap_key_data(jnp.asarray(v)) for k, v in keys.items()}    # scalar keys: no layer axis
    ref_state, ref_new = ref.do_updates(rf, rs, jax.tree.map(jnp.asarray, params), typed,
                                        jnp.asarray(f), (jnp.full(p, case["epoch"]), jnp.arange(p)), es_map)
    capsys.readouterr()                                            # the reference prints "LORA UPDATE"
    n_terms = p * max(case["rank"], max(case["shape"]))
    lr = 0.3
    for leaf in ("w", "b", "e"):
        got, want = new[leaf], np.asarray(ref_new[leaf])
        gl = np.abs(g[leaf]).astype(np.float64)
        sabs = _sum_of_absolute_terms(ours, frozen, state, params, keys, f, info, es_map, leaf)
        bound = lr * 2 * (n_terms + 4) * U * sabs + 2 * U * (np.abs(params[leaf]) + lr * gl) + 4 * U * lr * gl
        assert np.all(np.abs(got - want) <= bound + 1e-30), (leaf, np.abs(got - want).max(), bound.max())
        if leaf == "e":
            assert np.array_equal(got, params["e"])               # the reference's EMB update is zero


def _sum_of_absolute_terms(ours, frozen, state, params, keys, f, info, es_map, leaf):
    """(1/√N) Σₙ |fₙ| |Dₙ| entrywise, Dₙ from the estimate with fitness 1 for member n alone."""
    p = f.size
    total = np.zeros(np.shape(params[leaf]))
    for n in range(p):
        one = np.zeros(p, np.float32)
        one[n] = 1.0
        d = ours.estimate_grads(frozen, state, params, keys, one, info, es_map)[leaf].astype(np.float64)  # −Dₙ/√N
        total += abs(float(f[n])) * np.abs(d)
    return total


def test_baseline_fitness_matches_the_reference():
    """EggRollBS.convert_fitnesses: (Q, G) and (Q·G,) raw scores. Bound: float32 means and std of G
    numbers: relative 4·(G + 2)·u of |Z| plus the same of the std's contribution."""
    mod = reference("eggroll_baseline_subtraction")
    for q, gsize in ((1, 8), (3, 6), (4, 5)):
        raw = (np.random.default_rng(q).standard_normal((q, gsize)) * 3 + 1).astype(np.float32)
        rf, rs = mod.EggRollBS.init_noiser({}, 0.1, 0.1, group_size=gsize)
        frozen, state = EggRollBS.init_noiser({}, 0.1, 0.1, group_size=gsize)
        for shaped in (raw, raw.ravel()):
            want = np.asarray(mod.EggRollBS.convert_fitnesses(rf, rs, jnp.asarray(shaped)))
            got = EggRollBS.convert_fitnesses(frozen, state, shaped)
            assert got.shape == want.shape == (gsize,)
            bound = 8 * (gsize + 2) * U * (np.abs(got) + 1)
            assert np.all(np.abs(got - want) <= bound), np.abs(got - want).max()


def test_sparse_reference_do_tmm_swaps_its_indices():
    """Pins the reference's side of a difference (docs/reference-differences.md): for a square W
    its do_Tmm adds x Eᵀ where the perturbation it updates with is E (npegg adds x E)."""
    mod = reference("sparse")
    case = dict(shape=(6, 6), rank=1, pop=2, epoch=0, noise_reuse=0, sigma=0.3)
    _, ref, rf, rs, frozen, state, params, keys, rng = _setup("sparse", case)
    w = params["w"]
    x = rng.standard_normal((2, 6)).astype(np.float32)
    members = np.arange(2)
    vals, rows, cols = ReferenceNoise().sparse(keys["w"], 0, members, (6, 6), 6, 0)
    e = np.zeros((2, 6, 6))
    for n in members:
        np.add.at(e[n], (rows[n], cols[n]), vals[n] * 0.3 * (1 if n % 2 == 0 else -1))
    for n in members:
        want_ref = np.asarray(mod.Sparse.do_Tmm(rf, rs, jnp.asarray(w), jnp.asarray(keys["w"]), (0, n), jnp.asarray(x[n])))
        np.testing.assert_allclose(want_ref, x[n] @ (w + e[n].T), rtol=1e-5, atol=1e-5)   # x (W + Eᵀ)
    ours = Sparse.do_Tmm(frozen, state, w, keys["w"], (0, members), x)
    np.testing.assert_allclose(ours, np.einsum("pi,pio->po", x, w + e), rtol=1e-5, atol=1e-5)  # x (W + E)
    assert not np.allclose(ours, np.einsum("pi,pio->po", x, w + e.transpose(0, 2, 1)), atol=1e-3)
