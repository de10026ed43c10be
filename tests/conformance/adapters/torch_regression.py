"""The statistical-conformance problem (``npegg.conformance.stats``: the seed notebook's regression,
small) run by each PyTorch port with its own noise: epochs to the target validation MSE per seed.

Each run starts from npegg's initial parameters for the seed (``stats.regression_init``), sees the
same batches (``stats.regression_batch``) and uses the same σ, learning rate (mapped to the port's
scale), population and rank; only the port's noise and arithmetic differ. The model is the same
MLP 1 → 16 → 16 → 1 with pqn = relu(layer_norm(x)) (eps 1e-5, no affine part), written in torch.

Seeding: torcheggroll and eggroll-trainer take no seed for their noise (torcheggroll hashes
(epoch, member, leaf); eggroll-trainer re-seeds with epoch·10⁶ + member and ignores its ``seed``
argument), so their noise would be the same for every seed: each run starts their epoch counter
at 1000·seed instead, a different stretch of their own noise. eggroll-es takes ``seed``.
"""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from npegg.conformance import stats as S

CFG = S.REGRESSION
#: seeds per side in the statistical tests (test_ports.py) and the scoreboard rows (torch_reports.py)
K_REFERENCE, K_TORCHEGGROLL, K_EGGROLL_ES, K_TRAINER = 20, 20, 10, 5
MARGIN = 1.2       # the epochs may differ by this factor either way (ratio of geometric means)


class RegressionMLP(nn.Module):
    """npegg's MLP(1 → 16 → 16 → 1, activation 'pqn') in torch, loaded with npegg's initial params."""

    def __init__(self, init: dict):
        super().__init__()
        n = len([k for k in init if k.endswith("/weight")])
        self.layers = nn.ModuleList()
        for i in range(n):
            w = init[f"{i}/weight"]
            lin = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(init[f"{i}/bias"]))
            self.layers.append(lin)

    def forward(self, x):
        for i, lin in enumerate(self.layers):
            x = lin(x)
            if i < len(self.layers) - 1:
                x = F.relu(F.layer_norm(x, (x.shape[-1],), eps=1e-5))
        return x


class _Data:
    def __init__(self):
        tx, ty, vx, vy = S.regression_data()
        self.tx, self.ty = torch.from_numpy(tx)[:, None], torch.from_numpy(ty)[:, None]
        self.vx, self.vy = torch.from_numpy(vx)[:, None], torch.from_numpy(vy)[:, None]

    def batch(self, epoch):
        idx = torch.from_numpy(S.regression_batch(epoch))
        return self.tx[idx], self.ty[idx]

    def val_mse(self, model):
        with torch.no_grad():
            return float(((model(self.vx) - self.vy) ** 2).mean())


def _mse(out, y):
    return ((out - y) ** 2).mean()


def torcheggroll_epochs(seed: int, target: float = CFG["target_mse"]) -> float:
    """Epochs torcheggroll's TorchEggrollES needs to reach the target (its defaults: antithetic, z-score)."""
    import torcheggroll
    data, model = _Data(), RegressionMLP(S.regression_init(seed))
    es = torcheggroll.TorchEggrollES(model, pop_size=CFG["pop_size"], sigma=CFG["sigma"], lr=CFG["lr"], rank=1)
    es.epoch = 1000 * seed
    for epoch in range(CFG["epochs"]):
        es.step(*_pair(data.batch(epoch)))
        if data.val_mse(model) <= target:
            return float(epoch + 1)
    return float(CFG["epochs"] + 1)


def _pair(batch):
    x, y = batch
    return x, _mse, y


def eggroll_trainer_epochs(seed: int, noise_reuse: int = 0, target: float = CFG["target_mse"],
                           budget: int = CFG["epochs"]) -> float:
    """Epochs eggroll-trainer's EGGROLLTrainer needs (its default noise_reuse = 0: no antithetic pairs);
    ``budget + 1`` when it does not reach the target within ``budget`` epochs (censored)."""
    from eggroll_trainer import EGGROLLTrainer
    data, model = _Data(), RegressionMLP(S.regression_init(seed))
    current = {}

    def fitness(m):
        with torch.no_grad():
            return -float(_mse(m(current["x"]), current["y"]))

    tr = EGGROLLTrainer(model.parameters(), model, fitness, population_size=CFG["pop_size"], learning_rate=CFG["lr"],
                        sigma=CFG["sigma"], rank=1, noise_reuse=noise_reuse)
    tr.generation = 1000 * seed
    for epoch in range(budget):
        current["x"], current["y"] = data.batch(epoch)
        tr.step()
        if data.val_mse(model) <= target:
            return float(epoch + 1)
    return float(budget + 1)


class _Reached(Exception):
    pass


def eggroll_es_epochs(seed: int, target: float = CFG["target_mse"]) -> float:
    """Epochs eggroll-es's EggrollTrainer needs: P/2 antithetic pairs, rank 1, 'normalized' shaping,
    its learning rate mapped to npegg's scale (lr·σ·√P; see torch_eggroll_es)."""
    from eggroll import EggrollConfig, EggrollTrainer
    data, model = _Data(), RegressionMLP(S.regression_init(seed))
    p = CFG["pop_size"]
    cfg = EggrollConfig(population_size=p // 2, rank=1, sigma=CFG["sigma"], lr=CFG["lr"] * CFG["sigma"] * math.sqrt(p),
                        generations=CFG["epochs"], antithetic=True, device="cpu", seed=seed,
                        fitness_shaping="normalized")
    reached = {}

    def reward(m, batch):
        x, y = batch
        with torch.no_grad():
            return -float(_mse(m(x), y))

    def callback(stats):      # runs after the update is applied to the model
        if data.val_mse(model) <= target:
            reached["epoch"] = stats["generation"] + 1
            raise _Reached

    with contextlib.redirect_stdout(io.StringIO()):
        tr = EggrollTrainer(model, cfg, reward)
        try:
            tr.evolve([data.batch(e) for e in range(CFG["epochs"])], callback=callback)
        except _Reached:
            pass
    return float(reached.get("epoch", CFG["epochs"] + 1))
