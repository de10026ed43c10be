"""Backprop through time for ByteLM: its forward is ByteLM's, its gradient is the loss's (central
finite differences, float64), and a few optimizer steps with it lower the loss."""
import numpy as np
import pytest

from npegg import keys as K
from npegg import optim
from npegg.backprop import loss, loss_and_grad, train_step
from npegg.backprop.cells import CELL_PASSES
from npegg.models.common import simple_es_tree_key
from npegg.models.lm import ByteLM
from npegg.noiser import EggRoll
from npegg.tree import tree_items, tree_map

CELLS = sorted(CELL_PASSES)


def small_problem(cell, D=5, L=2, B=3, T=7, seed=0, mlp_ratio=4, direct=False):
    """float64 params (init + a perturbation so no gate or norm sits at a special point), bytes with
    document starts (byte 0) mid-window and at t = 0, and a non-zero carried state."""
    init = ByteLM.rand_init(K.key(seed), D, L, cell=cell, mlp_ratio=mlp_ratio, direct_path=direct, dtype="float64")
    rng = np.random.default_rng(seed)
    params = tree_map(lambda p: p + 0.3 * rng.standard_normal(p.shape), init.params)
    w = rng.integers(1, 256, (B, T + 1))
    w[0, 3] = 0
    w[2, 0] = 0
    state = 0.5 * rng.standard_normal((B, L, D))                    # (B, L, D)
    return init, params, w[:, :-1], w[:, 1:], state


@pytest.mark.parametrize("mlp_ratio, direct", [(4, False), (0, True)])
@pytest.mark.parametrize("cell", CELLS)
def test_forward_is_bytelm_forward(cell, mlp_ratio, direct):
    """ℓ and the new state equal ByteLM's own plain forward (the model ES perturbs) to float64 rounding."""
    init, params, tok, tgt, state = small_problem(cell, mlp_ratio=mlp_ratio, direct=direct)
    frozen_noiser, noiser_params = EggRoll.init_noiser(params, 0.1, 0.1)
    keys = simple_es_tree_key(params, K.key(1), init.scan_map)
    ll, ref_state = ByteLM.forward(EggRoll, frozen_noiser, noiser_params, init.frozen_params, params, keys, None,
                                   tok, state, targets=tgt)
    value, _, new_state = loss_and_grad(init.frozen_params, params, tok, tgt, state)
    assert abs(value - (-ll.mean())) < 1e-12
    assert np.allclose(new_state, ref_state, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mlp_ratio, direct", [(4, False), (0, True)])
@pytest.mark.parametrize("cell", CELLS)
def test_gradient_matches_central_differences_on_every_leaf(cell, mlp_ratio, direct):
    """For every parameter leaf: the directional derivative along a random unit direction of the whole
    leaf, and 3 single entries, match (ℓ(θ + εv) − ℓ(θ − εv)) / 2ε. In float64 with ε = 1e-5 the
    difference's truncation error is O(ε²) ≈ 1e-10 and its rounding ≈ 1e-16/ε = 1e-11, so a tolerance
    of 1e-7 (relative, floor 1) fails only for a wrong gradient."""
    init, params, tok, tgt, state = small_problem(cell, mlp_ratio=mlp_ratio, direct=direct)
    fp = init.frozen_params
    _, grads, _ = loss_and_grad(fp, params, tok, tgt, state)
    g = dict(tree_items(grads))
    rng = np.random.default_rng(1)
    eps = 1e-5
    leaves = list(tree_items(params))
    assert {p for p, _ in leaves} == set(g)
    for path, leaf in leaves:
        v = rng.standard_normal(leaf.shape)
        directions = [v / np.linalg.norm(v)]                          # unit length: ε is the step
        flat_used = np.flatnonzero(g[path]) if path == "emb" else np.arange(leaf.size)  # emb: rows of seen bytes
        for i in rng.choice(flat_used, 3, replace=False):
            e = np.zeros(leaf.size)
            e[i] = 1.0
            directions.append(e.reshape(leaf.shape))
        for v in directions:
            base = leaf.copy()
            leaf += eps * v
            up = loss(fp, params, tok, tgt, state)
            leaf[...] = base - eps * v
            down = loss(fp, params, tok, tgt, state)
            leaf[...] = base
            fd, an = (up - down) / (2 * eps), float(np.sum(g[path] * v))
            assert abs(fd - an) <= 1e-7 * max(1.0, abs(an)), (path, fd, an)


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_of_unseen_embedding_rows_is_zero(cell):
    """Only the embedding rows of bytes that occur in the input get a gradient."""
    init, params, tok, tgt, state = small_problem(cell)
    _, grads, _ = loss_and_grad(init.frozen_params, params, tok, tgt, state)
    unseen = np.setdiff1d(np.arange(256), tok)
    assert np.all(grads["emb"][unseen] == 0) and np.any(grads["emb"][np.unique(tok)] != 0)


@pytest.mark.parametrize("cell", CELLS)
def test_a_few_adam_steps_lower_the_loss(cell):
    """40 Adam steps (float32, lr 0.01) on a repeated phrase take ℓ from ~5.5 nats below 2.5."""
    init = ByteLM.rand_init(K.key(0), 16, 1, cell=cell)
    text = np.frombuffer(b"\0def f(x):\n    return x + 1\n" * 4, np.uint8)
    windows = np.stack([text[i:i + 33] for i in (0, 7, 15, 22)])     # (4, 33)
    opt = optim.adam(0.01)
    params, opt_state = init.params, opt.init(init.params)
    state = ByteLM.init_state(init.frozen_params, 4)
    first = None
    for _ in range(40):
        params, opt_state, _, value = train_step(opt, init.frozen_params, params, opt_state, windows[:, :-1],
                                                 windows[:, 1:], state)
        first = value if first is None else first
    final = loss(init.frozen_params, params, windows[:, :-1], windows[:, 1:], state)
    assert first > 5.0 and final < 2.5, (first, final)
    assert all(v.dtype == np.float32 for _, v in tree_items(params))
