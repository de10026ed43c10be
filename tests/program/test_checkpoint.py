"""Checkpoints: exact round trip, atomic writes, clear errors, and the run-folder guard."""
from __future__ import annotations

import json

import numpy as np
import pytest

from npegg.program import checkpoint as ckpt
from npegg.program.checkpoint import (CheckpointError, RunDirError, load_checkpoint, model_fingerprint,
                              prepare_run_dir, save_checkpoint)
from npegg.program.data import BatchReader
from npegg.tree import flatten


def make_params(hidden: int = 4) -> dict:
    rng = np.random.default_rng(hidden)
    return {
        "emb": rng.standard_normal((256, hidden)).astype(np.float32),
        "blocks": {"att": {"Wf": rng.integers(-127, 128, (1, hidden, hidden), dtype=np.int8),
                           "bf": np.zeros((1, hidden), np.int8)}},
        "head": rng.standard_normal((hidden, 256)).astype(np.float32),
    }


def trees_equal(a, b) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(trees_equal(a[k], b[k]) for k in a))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


@pytest.fixture
def saved(tmp_path):
    params = make_params()
    trees = {
        "params": params,
        "opt_state": {"mu": {"emb": np.ones((256, 4), np.float32)}, "count": np.array(3, np.int64), "empty": {}},
        "noiser": {"key": np.array([0, 1], np.uint32), "flags": np.array([True, False])},
        "data": {"pos": np.arange(5, dtype=np.int64)},
        "extra": {},
    }
    fp = model_fingerprint("egg", params, hidden_dim=4, n_layers=1, dtype="int8")
    path = save_checkpoint(tmp_path / "run" / "ckpt.npz", trees, config={"lr": 0.02, "cell": "egg"},
                           scalars={"epoch": 12, "sigma": 0.03}, fingerprint=fp)
    return path, trees, fp


def test_round_trip_keeps_values_dtypes_and_empty_dicts(saved):
    path, trees, fp = saved
    ck = load_checkpoint(path, expect=fp)
    assert trees_equal(ck.trees, trees)
    assert ck.config == {"lr": 0.02, "cell": "egg"} and ck.scalars == {"epoch": 12, "sigma": 0.03}
    assert ck.fingerprint == fp and ck.trees["params"]["blocks"]["att"]["Wf"].dtype == np.int8


def test_file_is_plain_npz_without_pickle(saved):
    path, _, _ = saved
    with np.load(path, allow_pickle=False) as z:
        assert str(z["__npegg__/format"]) == "npegg-checkpoint"
        assert json.loads(str(z["__npegg__/config"]))["cell"] == "egg"
        assert z["__scalars__/epoch"].shape == () and "params/blocks/att/Wf" in z.files


def test_failed_write_leaves_old_checkpoint_intact(saved, monkeypatch):
    path, trees, fp = saved
    before = path.read_bytes()
    calls = []

    def failing_write(fileobj, arr):
        calls.append(1)
        if len(calls) == 7:
            raise OSError("disk full (simulated)")
        np.lib.format.write_array(fileobj, arr, allow_pickle=False)

    monkeypatch.setattr(ckpt, "_write_array", failing_write)
    changed = dict(trees, params=make_params())
    changed["params"]["emb"] += 1.0
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, changed, fingerprint=fp)
    assert len(calls) == 7 and path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.npz"]      # no temp file left behind
    assert trees_equal(load_checkpoint(path).trees["params"], trees["params"])


def test_saving_again_replaces_the_file(saved):
    path, trees, fp = saved
    save_checkpoint(path, trees, scalars={"epoch": 13}, fingerprint=fp)
    assert load_checkpoint(path).scalars == {"epoch": 13}


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_file_gives_clear_error(saved, damage):
    path, _, _ = saved
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip":
        raw[len(raw) // 3] ^= 0xFF                        # inside a stored array: the zip CRC catches it
    elif damage == "garbage":
        raw = bytearray(b"not a zip file at all" * 10)
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt or truncated") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


def test_files_that_are_not_npegg_checkpoints(tmp_path):
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("other.npz", "array.npy"):
        with pytest.raises(CheckpointError, match="not an npegg checkpoint"):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.npz")


def test_checkpoint_of_another_model_names_the_mismatch(saved):
    path, _, _ = saved
    other = model_fingerprint("egg", make_params(hidden=8), hidden_dim=8, n_layers=1, dtype="int8")
    with pytest.raises(CheckpointError, match="another model") as e:
        load_checkpoint(path, expect=other)
    msg = str(e.value)
    assert str(path) in msg and "hidden_dim: checkpoint 4 vs this model 8" in msg
    assert "params/emb: checkpoint float32 (256, 4) vs this model float32 (256, 8)" in msg
    mingru = model_fingerprint("mingru", make_params(), hidden_dim=4, n_layers=1, dtype="int8")
    with pytest.raises(CheckpointError, match="model kind: checkpoint 'egg' vs this model 'mingru'"):
        load_checkpoint(path, expect=mingru)


def test_save_rejects_what_it_could_not_load_back(tmp_path):
    params = make_params()
    wrong = model_fingerprint("egg", make_params(hidden=8), hidden_dim=8)
    with pytest.raises(ValueError, match="does not describe"):
        save_checkpoint(tmp_path / "a.npz", {"params": params}, fingerprint=wrong)
    with pytest.raises(ValueError, match="without '/'"):
        save_checkpoint(tmp_path / "b.npz", {"params": {"a/b": np.zeros(2)}})
    with pytest.raises(ValueError, match="without pickle"):
        save_checkpoint(tmp_path / "c.npz", {"params": {"f": object()}})
    assert not any(tmp_path.iterdir())


def test_reader_position_resumes_through_a_checkpoint(tmp_path):
    """Save the data position mid-run; the reloaded state continues with the same windows."""
    reader = BatchReader(np.random.default_rng(2).integers(0, 256, 4000, dtype=np.uint8), 8, 2, 9)
    state = reader.init()
    for _ in range(5):
        _, state = reader.next(state)
    save_checkpoint(tmp_path / "c.npz", {"data": state})
    resumed = load_checkpoint(tmp_path / "c.npz").trees["data"]
    for _ in range(30):
        w_a, state = reader.next(state)
        w_b, resumed = reader.next(resumed)
        assert np.array_equal(w_a, w_b)


def test_prepare_run_dir_refuses_non_empty_folder_without_overwrite(tmp_path):
    run = prepare_run_dir(tmp_path / "runs" / "a")
    assert run.is_dir() and prepare_run_dir(run) == run        # an empty folder may be reused
    (run / "ckpt.npz").write_bytes(b"user data")
    with pytest.raises(RunDirError, match="--overwrite") as e:
        prepare_run_dir(run)
    assert str(run) in str(e.value)
    assert prepare_run_dir(run, overwrite=True) == run and (run / "ckpt.npz").read_bytes() == b"user data"
    with pytest.raises(RunDirError, match="is a file"):
        prepare_run_dir(run / "ckpt.npz", overwrite=True)


def test_fingerprint_lists_every_leaf_with_dtype_and_shape():
    fp = model_fingerprint("egg", make_params(), hidden_dim=4)
    assert list(fp["leaves"]) == list(flatten(make_params()))
    assert fp["leaves"]["blocks/att/Wf"] == ["|i1", [1, 4, 4]] and fp["sizes"] == {"hidden_dim": 4}
