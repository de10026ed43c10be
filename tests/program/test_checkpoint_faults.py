"""Fault injection on a real checkpoint: every damage is a clear CheckpointError or a bit-identical load.

The checkpoint is written by a real ``npegg train`` process on a tiny corpus. Damages: a seeded
single-byte fuzz (every byte of the zip's central directory, plus a seeded sample of the rest), a
zip-bomb member, unknown and non-``.npy`` members, members of another dtype or size, hand-edited
metadata, and a ``kill -9`` in the middle of a save.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from npegg.program.checkpoint import CheckpointError, load_checkpoint
from npegg.tree import flatten
from npegg_process import ENV, npegg_process, write_word_corpus

TINY = ["--hidden-dim", "8", "--n-layers", "1", "--pop-size", "8", "--group-size", "2",
        "--tokens-per-update", "16", "--sample-bytes", "0"]


def npegg(*argv, check=True):
    p = npegg_process(*argv)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_word_corpus(tmp_path_factory.mktemp("corpus"), seed=1)


@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory):
    """A real 2-epoch float run (its checkpoint has params, Adam state, hidden states, data, history)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    npegg("train", "--data", corpus, *TINY, "--epochs", "2", "--out", out)
    return out


def same(a, b) -> bool:
    """Two loaded checkpoints are bit-identical: trees (dtype, shape, bytes), config, scalars, fingerprint."""
    fa, fb = flatten(a.trees), flatten(b.trees)
    return (fa.keys() == fb.keys()
            and all(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
                    for x, y in ((np.asarray(fa[k]), np.asarray(fb[k])) for k in fa))
            and a.config == b.config and a.scalars == b.scalars and a.fingerprint == b.fingerprint)


def flip_positions(raw: bytes, rng) -> np.ndarray:
    """Where to flip: the end record, every length field of every central-directory entry (a flipped
    comment length once hid later members), 400 seeded central-directory bytes and 400 seeded others."""
    eocd = raw.rfind(b"PK\x05\x06")
    cd = int.from_bytes(raw[eocd + 16: eocd + 20], "little")
    lengths, pos = [], cd
    while raw[pos: pos + 4] == b"PK\x01\x02":                 # one central-directory entry
        lengths += range(pos + 28, pos + 34)                    # name, extra and comment lengths
        n, x, c = (int.from_bytes(raw[pos + o: pos + o + 2], "little") for o in (28, 30, 32))
        pos += 46 + n + x + c
    assert pos == eocd and len(lengths) > 6 * 40                # walked every entry
    return np.unique(np.concatenate([np.arange(eocd, len(raw)), lengths,
                                     rng.choice(np.arange(cd, eocd), size=400, replace=False),
                                     rng.choice(cd, size=400, replace=False)]))


def test_byte_flip_fuzz_is_a_clear_error_or_an_identical_load(run_dir, tmp_path):
    """Each flip (``flip_positions``) XORs one byte with a seeded 1..255, then loads the file."""
    src = run_dir / "checkpoint.npz"
    raw, clean = src.read_bytes(), load_checkpoint(src)
    rng = np.random.default_rng(11)
    counts = {"flips": 0, "errors": 0, "identical": 0, "silent": 0}
    silent = []
    path = tmp_path / "flipped.npz"
    for pos in flip_positions(raw, rng):
        damaged = bytearray(raw)
        damaged[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(damaged))
        counts["flips"] += 1
        try:
            loaded = load_checkpoint(path)
        except CheckpointError as e:
            assert str(path) in str(e)
            counts["errors"] += 1
            continue
        if same(loaded, clean):
            counts["identical"] += 1
        else:
            counts["silent"] += 1
            silent.append(int(pos))
    print(f"byte-flip fuzz over a {len(raw):,}-byte checkpoint: {counts}")
    assert counts["silent"] == 0, f"silently different loads after flips at {silent[:10]}"
    assert counts["flips"] == counts["errors"] + counts["identical"] and counts["errors"] > counts["flips"] // 2


# -- rewriting a checkpoint member by member ---------------------------------------------------------
def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def npy(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=True)
    return buf.getvalue()


def rewrite(src: Path, dst: Path, changes: dict, fix_manifest: bool = True, compress: set = frozenset()) -> Path:
    """Copy ``src`` with members replaced (bytes), added, or removed (None); with ``fix_manifest``
    the manifest is updated to match, as a careful hand-editor would."""
    m = members(src)
    for k, v in changes.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    if fix_manifest:
        man = json.loads(str(np.load(io.BytesIO(m["__npegg__/manifest.npy"]))))
        for k, v in changes.items():
            key = k[:-4]
            if v is None:
                man.pop(key, None)
            elif k.endswith(".npy") and k != "__npegg__/manifest.npy":
                a = np.lib.format.read_array(io.BytesIO(v), allow_pickle=True)
                man[key] = {"dtype": a.dtype.str, "shape": list(a.shape), "bytes": len(v),
                            "sha256": hashlib.sha256(v).hexdigest()}
        m["__npegg__/manifest.npy"] = npy(np.array(json.dumps(man)))
    with zipfile.ZipFile(dst, "w") as zf:
        for k, v in m.items():
            zf.writestr(k, v, zipfile.ZIP_DEFLATED if k in compress else zipfile.ZIP_STORED)
    return dst


def test_zip_bomb_member_is_refused_before_decompressing(run_dir, tmp_path):
    """A deflated member whose directory entry declares 1 GiB: refused from the directory, nothing inflated.

    (The member holds 1 MiB of deflated zeros; its declared size is then set to 1 GiB + 128 in the
    local and central headers, which is all a reader sees before inflating.)"""
    bomb = rewrite(run_dir / "checkpoint.npz", tmp_path / "bomb.npz", {"params/big.npy": bytes(1 << 20)},
                   fix_manifest=False, compress={"params/big.npy"})
    with zipfile.ZipFile(bomb) as zf:
        local = zf.getinfo("params/big.npy").header_offset
    raw = bytearray(bomb.read_bytes())
    central = raw.rfind(b"params/big.npy") - 46
    big = (1 << 30) + 128
    for at in (local + 22, central + 24):                      # uncompressed size fields
        raw[at: at + 4] = big.to_bytes(4, "little")
    bomb.write_bytes(bytes(raw))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match="'params/big.npy' is compressed .* declared to expand to 1,073,741,952"):
        load_checkpoint(bomb)


@pytest.mark.parametrize("change, match", [
    ({"evil.npy": npy(np.zeros(3))}, "not in its manifest: evil"),
    ({"readme.txt": b"hello"}, "'readme.txt' is not a .npy array"),
    ({"hidden.npy": None}, "missing: hidden"),
])
def test_unknown_missing_and_foreign_members_are_refused(run_dir, tmp_path, change, match):
    dst = rewrite(run_dir / "checkpoint.npz", tmp_path / "c.npz", change, fix_manifest=False)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(dst)


def test_member_of_another_dtype_shape_or_size_is_refused(run_dir, tmp_path):
    src = run_dir / "checkpoint.npz"
    hidden = np.load(io.BytesIO(members(src)["hidden.npy"]))
    as_int = npy(hidden.view(np.int32))                         # same size, another dtype
    dst = rewrite(src, tmp_path / "a.npz", {"hidden.npy": as_int}, fix_manifest=False)
    with pytest.raises(CheckpointError, match="'hidden' does not match its checksum"):
        load_checkpoint(dst)
    dst = rewrite(src, tmp_path / "b.npz", {"hidden.npy": npy(hidden[:1])}, fix_manifest=False)
    with pytest.raises(CheckpointError, match="'hidden' declares .* bytes, its manifest"):
        load_checkpoint(dst)
    man = json.loads(str(np.load(io.BytesIO(members(src)["__npegg__/manifest.npy"]))))
    man["hidden"]["dtype"] = "<i4"                             # manifest edited, bytes left alone
    dst = rewrite(src, tmp_path / "c.npz", {"__npegg__/manifest.npy": npy(np.array(json.dumps(man)))},
                  fix_manifest=False)
    with pytest.raises(CheckpointError, match="'hidden' is float32 .* its manifest says <i4"):
        load_checkpoint(dst)


@pytest.mark.parametrize("member, value, match", [
    ("__npegg__/config.npy", np.array("[1, 2]"), "config' must be a JSON object, found list"),
    ("__npegg__/config.npy", np.array("{not json"), "config' is not JSON"),
    ("__npegg__/config.npy", np.array(3), "config' is missing or not a string"),
    ("__npegg__/layout.npy", np.array('{"trees": "params", "empty": []}'), "layout must list"),
    ("__npegg__/fingerprint.npy", np.array('{"kind": "x", "sizes": [1]}'), "fingerprint sizes"),
    ("__npegg__/version.npy", np.array(0, np.int64), "format version 0 does not exist"),
    ("__npegg__/version.npy", np.array(-3, np.int64), "format version -3 does not exist"),
    ("__npegg__/version.npy", np.array(9, np.int64), "format 9 is newer"),
    ("__npegg__/version.npy", np.array("2"), "not an integer"),
    ("__scalars__/epoch.npy", np.array(-1, np.int64), "epoch must be an integer >= 0"),
    ("__scalars__/epoch.npy", np.array(2.5), "epoch must be an integer >= 0"),
    ("hidden.npy", np.array([{"a": 1}], dtype=object), "holds Python objects"),
])
def test_hand_edited_metadata_is_a_clear_error(run_dir, tmp_path, member, value, match):
    """Edited with the manifest updated to match, so only the type checks stand between it and use."""
    dst = rewrite(run_dir / "checkpoint.npz", tmp_path / "c.npz", {member: npy(value)})
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(dst)
# -- kill -9 in the middle of a save ------------------------------------------------------------------
SLOW_SAVER = """
import sys, time
import numpy as np
from npegg.program import checkpoint as C
path = sys.argv[1]
ck = C.load_checkpoint(path)
real = C._write_array
def slow(f, arr):                        # a slow disk: each member takes 20 ms to write
    time.sleep(0.02)
    real(f, arr)
C._write_array = slow
print("saving", flush=True)
while True:
    C.save_checkpoint(path, ck.trees, config=ck.config, scalars=ck.scalars, fingerprint=ck.fingerprint)
"""


def test_kill_during_save_leaves_a_loadable_checkpoint_and_resume_cleans_temps(run_dir, corpus, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    before = load_checkpoint(run / "checkpoint.npz")
    p = subprocess.Popen([sys.executable, "-c", SLOW_SAVER, str(run / "checkpoint.npz")], env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "saving"
        deadline = time.monotonic() + 30
        while not any(q.name.endswith(".tmp") and q.stat().st_size > 0 for q in run.iterdir()):
            assert time.monotonic() < deadline and p.poll() is None, p.stderr.read() if p.poll() else "no temp file"
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL
    temps = [q.name for q in run.iterdir() if q.name.endswith(".tmp")]
    assert temps, "the kill should have left the save's temporary file behind"
    assert same(load_checkpoint(run / "checkpoint.npz"), before)          # the last complete save, intact
    npegg("train", "--resume", run, "--epochs", "2")                       # nothing left to train: 0 epochs
    assert not [q.name for q in run.iterdir() if q.name.endswith(".tmp")]
    assert same(load_checkpoint(run / "checkpoint.npz"), before)
