"""The default ES epoch's speed-ups change no bit: each fast path against its slow twin, np.array_equal.

The fast paths (issue 21): one draw of each leaf's noise for the whole population, sliced by the
model's member chunks and reused by the update (``NoiseTable.gather_for``); the minGRU's gates,
its time loop and LayerNorm's affine part written into their own fresh arrays. None of them
changes an operation or its order, so the results must be the same bits, not merely close.
"""
import numpy as np

from npegg.models.common import CommonParams, LayerNorm, layer_norm
from npegg.models.lm import ByteLM
from npegg.models.mingru import MinGRUCell, linear_scan_loop, sigmoid
from npegg.noise import NoiseTable
from npegg.noiser import EggRoll
from npegg.program.config import TrainConfig
from npegg.program.data import BatchReader
from npegg.program.runs import make_run
from npegg.tree import flatten


class PerCallNoise(NoiseTable):
    """The slow twin of the population gather: every request draws its own members' noise."""

    def gather_for(self, members) -> None:
        self._population = None


def _run(noise: NoiseTable):
    """A FloatRun at the `npegg train` defaults but P = 256 (4 minGRU member chunks of 81, head
    chunks of 20: the chunk boundaries the population gather must slice across), random bytes."""
    cfg = TrainConfig(pop_size=256).resolved()
    run = make_run(cfg, None)
    run.es.frozen_noiser_params["noise"] = noise
    rng = np.random.default_rng(0)
    data = rng.integers(1, 256, 200_000, dtype=np.uint8)
    data[rng.random(data.size) < 0.002] = 0                                  # document starts
    run.reader = BatchReader(data, cfg.pop_size, cfg.group_size, cfg.tokens_per_update)
    return run


def _epochs(run, n=3):
    """n epochs; each epoch's perturbed log-likelihoods (P, T) and the final params, optimizer state, hidden."""
    lls = []
    for _ in range(n):
        windows, _ = run.reader.next(run.data_state)
        lls.append(run.es.forward(run.state, windows[:, :-1], run.hidden, targets=windows[:, 1:])[0])
        run.epoch_step()
    return lls, flatten(run.state.params), flatten(run.state.noiser_params["opt_state"]), run.hidden


def test_population_noise_gather_is_the_same_bits_as_per_chunk_noise():
    """Three default-shaped epochs: forward outputs, new params, Adam state and hidden state equal bit for bit."""
    fast, slow = _epochs(_run(NoiseTable(seed=0))), _epochs(_run(PerCallNoise(seed=0)))
    for f, s in zip(fast[0], slow[0]):
        assert f.dtype == s.dtype and np.array_equal(f, s)
    for tree_f, tree_s in zip(fast[1:3], slow[1:3]):
        assert tree_f.keys() == tree_s.keys()
        for path in tree_f:
            assert np.array_equal(np.asarray(tree_f[path]), np.asarray(tree_s[path])), path
    assert np.array_equal(fast[3], slow[3])


def test_gather_slices_equal_a_fresh_draw_and_ignore_other_members():
    """A chunk of the gathered population = that chunk drawn alone; non-contiguous members draw alone."""
    key, shape = np.array([7, 9], np.uint32), (40, 24)
    whole, alone = NoiseTable(seed=3), PerCallNoise(seed=3)
    whole.gather_for(np.arange(10, 110))
    for members in (np.arange(10, 30), np.arange(95, 110), np.array([12, 11, 40]), np.arange(100, 130)):
        for got, want in zip(whole.lowrank(key, 4, members, shape, 2, 1), alone.lowrank(key, 4, members, shape, 2, 1)):
            assert got.shape == want.shape and np.array_equal(got, want)
        assert np.array_equal(whole.full(key, 4, members, shape, 1), alone.full(key, 4, members, shape, 1))


def test_in_place_elementwise_paths_are_the_same_bits_as_their_expressions():
    """sigmoid(out=x), the time loop written into its output, LayerNorm's in-place affine part and the
    minGRU gates equal the textbook expressions with temporaries, bit for bit (float32)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 9, 16), dtype=np.float32) * 4
    assert np.array_equal(sigmoid(x.copy(), out=None), 0.5 + 0.5 * np.tanh(0.5 * x))
    y = x.copy()
    assert np.array_equal(sigmoid(y, out=y), 0.5 + 0.5 * np.tanh(0.5 * x))

    a, b, h0 = rng.random((6, 9, 16), dtype=np.float32), x, rng.standard_normal((6, 16), dtype=np.float32)
    h, want = h0, np.empty_like(b)
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        want[:, t] = h
    assert np.array_equal(linear_scan_loop(a, b, h0), want)

    init = LayerNorm.rand_init(None, 16)
    params = {k: rng.standard_normal(16).astype(np.float32) for k in init.params}
    cp = CommonParams(EggRoll, {}, {}, None, params, {k: None for k in params}, None)
    assert np.array_equal(LayerNorm._forward(cp, x), layer_norm(x) * params["weight"] + params["bias"])

    cell = MinGRUCell.rand_init(np.array([1, 2], np.uint32), 16)
    cp = CommonParams(EggRoll, {}, {}, None, cell.params, {k: None for k in cell.params}, None)
    def mm(w):                                    # the noiser's one GEMM over all rows
        return (x.reshape(-1, 16) @ w.T).reshape(x.shape)
    z = sigmoid(mm(cell.params["Wz"]) + cell.params["bz"])
    got_a, got_b = MinGRUCell._gates(cp, x)
    assert np.array_equal(got_a, 1 - z) and np.array_equal(got_b, z * (mm(cell.params["Wh"]) + cell.params["bh"]))
