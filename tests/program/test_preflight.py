"""The checks made before a run starts: parameter counts, the memory estimate, the run folder and its disk."""
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest

from npegg import keys as K
from npegg.models.egg import EGG
from npegg.models.lm import ByteLM
from npegg.program.config import TrainConfig
from npegg.noise import Int8NoiseTable, NoiseTable
from npegg.program.preflight import (PreflightError, check_memory, check_noise, check_out, memory_parts, noise_slice,
                                     param_count)
from npegg.tree import flatten


@pytest.mark.parametrize("mode, cell, d, layers, ratio, direct", [
    ("float", "mingru", 24, 3, 4, False), ("float", "egg", 17, 2, 4, False), ("float", "mingru", 24, 3, 0, True),
    ("float", "egg", 9, 2, 3, True), ("int", "egg", 16, 3, 4, False)])
def test_param_count_is_exact(mode, cell, d, layers, ratio, direct):
    params = (EGG.rand_init(K.key(0), d, layers, 256).params if mode == "int"
              else ByteLM.rand_init(K.key(0), d, layers, cell=cell, mlp_ratio=ratio, direct_path=direct).params)
    assert param_count(mode, cell, d, layers, ratio, direct) == sum(int(np.size(v)) for v in flatten(params).values())


def test_param_count_of_a_huge_mlp_ratio_builds_no_model():
    """--mlp-ratio 10²⁶ built its tiny fitting models with 10²⁶-wide MLPs: a ValueError traceback.
    A layer's MLP (D → M·D → D) adds 2·M·D² + M·D parameters: linear in M from M = 1 on."""
    m = 10**26
    one, two = (param_count("float", "mingru", 32, 2, r, True) for r in (1, 2))
    assert param_count("float", "mingru", 32, 2, m, True) == one + (m - 1) * (two - one)
    assert two - one == 2 * (2 * 32**2 + 32)                                # per layer: 2·D² weights, D biases


@pytest.mark.parametrize("mode, cell, d, ratio, direct", [
    ("float", "mingru", 8, 0, True), ("float", "egg", 3, 0, False), ("float", "mingru", 40, 9, True),
    ("float", "mingru", 300, 0, False), ("int", "egg", 8, 4, False), ("int", "egg", 70, 4, False)])
def test_noise_slice_is_the_widest_matrix_times_the_rank(mode, cell, d, ratio, direct):
    """noise_slice = max over the model's matrices (…, a, b) of (a + b)·R: what one member reads from the table."""
    params = (EGG.rand_init(K.key(0), d, 2, 256).params if mode == "int"
              else ByteLM.rand_init(K.key(0), d, 2, cell=cell, mlp_ratio=ratio, direct_path=direct).params)
    widest = max(v.shape[-2] + v.shape[-1] for v in flatten(params).values() if v.ndim >= 2)
    cfg = replace(TrainConfig(), mode=mode, cell=cell, hidden_dim=d, n_layers=2, mlp_ratio=ratio, direct_path=direct,
                  rank=3)
    assert noise_slice(cfg) == 3 * widest


def test_a_rank_whose_noise_does_not_fit_the_table_is_refused():
    """--rank 10²⁶ passed every check, and each worker then failed at its first forward with a traceback."""
    cfg = TrainConfig()
    biggest = NoiseTable().size // 512                                   # the direct table (256, 256) is the widest
    check_noise(replace(cfg, rank=biggest))
    with pytest.raises(PreflightError, match=rf"--rank {biggest + 1}: .* at most {biggest:,} here"):
        check_noise(replace(cfg, rank=biggest + 1))
    check_noise(replace(cfg, mode="int", cell="egg", rank=Int8NoiseTable().size // (256 + cfg.hidden_dim)))
    with pytest.raises(PreflightError, match="--rank"):
        check_noise(replace(cfg, mode="int", cell="egg", rank=10**26))
    with pytest.raises(PreflightError, match="--mlp-ratio 1000000 / --hidden-dim 32: .* too wide"):
        check_noise(replace(cfg, mlp_ratio=10**6))                       # no rank fits: the flags that do


def test_memory_refusal_names_the_flag_that_drives_it():
    check_memory(TrainConfig().resolved(), available=1 << 30)             # the defaults fit in 1 GiB
    cfg = replace(TrainConfig(), tokens_per_update=100).resolved()         # the messages below name T = 100
    check_memory(cfg, available=1 << 30)
    with pytest.raises(PreflightError, match=r"--hidden-dim 65536 / --n-layers 2: .* parameters"):
        check_memory(replace(cfg, hidden_dim=65536, pop_size=2, group_size=2), available=1 << 30)
    with pytest.raises(PreflightError, match=r"--pop-size 1024 / --tokens-per-update 100 / --hidden-dim 4096: "):
        check_memory(replace(cfg, hidden_dim=4096), available=1 << 30)      # a wide model's activations
    with pytest.raises(PreflightError, match=rf"--pop-size 65536 / --tokens-per-update 100 / --hidden-dim {cfg.hidden_dim}: "
                                             r".* population"):
        check_memory(replace(cfg, pop_size=65536), available=1 << 30)
    big = replace(cfg, pop_size=65536)
    assert sum(memory_parts(big).values()) > 1 << 30 and memory_parts(big)["population"] > memory_parts(big)["model"]


def test_a_rank_whose_noise_does_not_fit_in_memory_is_refused_naming_rank():
    """--rank 4096 fits the noise table (512·4096 numbers per member for the direct table) but one
    forward call's noise is C·N·(3 + 4L)·4 B ≈ 5.9 GB: refused on 4 GB, naming --rank; run on 64 GB."""
    cfg = replace(TrainConfig(), rank=4096).resolved()
    check_noise(cfg)
    assert memory_parts(cfg)["noise"] == 64 * 512 * 4096 * 11 * 4
    with pytest.raises(PreflightError, match=r"--rank 4096: each member's noise is 2,097,152 numbers .* smaller --rank"):
        check_memory(cfg, available=4 << 30)
    check_memory(cfg, available=64 << 30)
    assert memory_parts(replace(cfg, method="backprop"))["noise"] == 0           # backprop draws no noise


def test_out_is_probed_without_leaving_anything(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    check_out(out, need=1)
    assert not (tmp_path / "a").exists()                                   # folders made for the probe are removed
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(PreflightError, match=r"--out .*: the disk has .* free, and this run needs about .* more"):
        check_out(out, need=free * 10)
    assert not (tmp_path / "a").exists()
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(PreflightError, match="cannot write there"):
        check_out(f / "run", need=1)
    if os.geteuid() != 0:                                                  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(PreflightError, match="cannot write there"):
            check_out(ro / "run", need=1)


def test_memory_counts_a_replica_per_worker():
    """Each worker holds the model, optimizer and noise table again: a run that fits in one
    process can be refused over many workers, and the message says so."""
    cfg = TrainConfig().resolved()
    parts = memory_parts(cfg)
    one = sum(parts.values())
    three = one + 3 * (parts["model"] + parts["fixed"]) + 2 * parts["noise"]   # (W + 1)·(model + fixed) + W·noise + …, W = 3
    check_memory(cfg, available=one, workers=1)
    check_memory(cfg, available=three, workers=3)
    with pytest.raises(PreflightError, match=r"over 3 workers .* or fewer --workers"):
        check_memory(cfg, available=three - 1, workers=3)
