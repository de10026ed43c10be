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
from npegg.program.preflight import PreflightError, check_memory, check_out, memory_parts, param_count
from npegg.tree import flatten


@pytest.mark.parametrize("mode, cell, d, layers, ratio, direct", [
    ("float", "mingru", 24, 3, 4, False), ("float", "egg", 17, 2, 4, False), ("float", "mingru", 24, 3, 0, True),
    ("float", "egg", 9, 2, 3, True), ("int", "egg", 16, 3, 4, False)])
def test_param_count_is_exact(mode, cell, d, layers, ratio, direct):
    params = (EGG.rand_init(K.key(0), d, layers, 256).params if mode == "int"
              else ByteLM.rand_init(K.key(0), d, layers, cell=cell, mlp_ratio=ratio, direct_path=direct).params)
    assert param_count(mode, cell, d, layers, ratio, direct) == sum(int(np.size(v)) for v in flatten(params).values())


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
    three = one + 3 * (parts["model"] + parts["fixed"])                # (W + 1)·(model + fixed) + population, W = 3
    check_memory(cfg, available=one, workers=1)
    check_memory(cfg, available=three, workers=3)
    with pytest.raises(PreflightError, match=r"over 3 workers .* or fewer --workers"):
        check_memory(cfg, available=three - 1, workers=3)
