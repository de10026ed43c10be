"""Atomic writes of the run folder's files, the clean-up of stale temporaries, and the BLAS record."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from npegg.program.atomic import atomic_write, remove_stale_temps, temp_path
from npegg.program.blas import blas_config, config_differences, set_blas_threads
from npegg.program.report import write_metrics, write_sample


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = atomic_write(tmp_path / "metrics.json", "old\n")

    def half(f):
        f.write(b"new, half written")
        raise KeyboardInterrupt                     # Ctrl-C in the middle of a write
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def dead_pid() -> int:
    """The pid of a process that has ended (a real child, reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_only_npegg_temps_of_ended_writers_are_removed(tmp_path):
    """Issue 19 item 7: a user's file named like an old temporary (`.<name>.<8 hex>.tmp`) is not
    npegg's; a temporary whose writer still runs is not stale. Only `.<name>.npegg-<pid>-<hex>.tmp`
    of a pid that has ended goes."""
    keep = ["checkpoint.npz", "notes.tmp", ".hidden", ".checkpoint.npz.xyz.tmp", ".notes.txt.1a2b3c4d.tmp",
            ".notes.txt.npegg-x-1a2b3c4d.tmp", f".checkpoint.npz.npegg-{os.getpid()}-1a2b3c4d.tmp"]
    for name in keep:
        (tmp_path / name).write_text("user data")
    gone = dead_pid()
    stale = [tmp_path / f".{n}.npegg-{gone}-{i:08x}.tmp" for i, n in enumerate(("checkpoint.npz", "metrics.csv", "curve.png"))]
    for p in stale:
        p.write_bytes(b"\0" * 100)
    assert temp_path(tmp_path / "x").name.startswith(f".x.npegg-{os.getpid()}-")
    assert remove_stale_temps(tmp_path) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_metrics_and_sample_are_written_whole_and_json_is_strict(tmp_path):
    nan = float("nan")
    h = SimpleNamespace(epoch=[0, 1], train_bpb=[nan, 5.0], valid_bpb=[5.5, nan], seconds=[0.1, 0.2])
    csv_path, json_path = write_metrics(tmp_path, h, {"result": {"valid_bpb": float("nan"), "epoch": 1}})
    data = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["result"]["valid_bpb"] is None and data["history"]["valid_bpb"] == [5.5, None]
    assert csv_path.read_text().splitlines() == ["epoch,train_bpb,valid_bpb,seconds", "0,,5.500000,0.100000",
                                                 "1,5.000000,,0.200000"]
    assert write_sample(tmp_path / "sample.txt", b"\0ab\0c").read_bytes() == b"\n\nab\n\nc"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_blas_config_names_the_thread_count_in_force():
    set_blas_threads(2)
    two = blas_config()
    set_blas_threads(1)
    one = blas_config()
    assert one["numpy"] and one["blas"]
    if one["threads"] is None:                      # not OpenBLAS: the count cannot be read, nor set
        assert two["threads"] is None
    else:
        assert (one["threads"], two["threads"]) == (1, 2)
        assert config_differences(two, one) == ["threads: checkpoint 2, now 1"]
    assert config_differences(one, dict(one)) == []
