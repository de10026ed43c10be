"""The shipped reference vectors: intact, complete, and found by the parity tests in every clone."""
import hashlib
import os

import pytest

import parity

PATTERNS = ["egg_fwd_*.npz", "qegg_update*.npz", "qegg_fitness*.npz", "qegg_thresholds*.npz",
            "int8_units*.npz", "float_eggroll*.npz"]


def test_reference_files_match_their_checksums():
    """Every file listed in SHA256SUMS is present and unchanged, and every .npz is listed."""
    sums = dict(line.split()[::-1] for line in (parity.REFERENCE_DIR / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == {p.name for p in parity.REFERENCE_DIR.glob("*.npz")}
    for name, digest in sums.items():
        assert hashlib.sha256((parity.REFERENCE_DIR / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_vector_type_is_shipped(pattern):
    assert [p for p in parity.parity_files(pattern) if parity.REFERENCE_DIR in p.values[0].parents]


def test_parity_dir_adds_folders_and_never_replaces(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "float_eggroll_x.npz").write_bytes((parity.REFERENCE_DIR / "float_eggroll.npz").read_bytes())
    monkeypatch.setenv(parity.ENV, os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    ids = [p.id for p in parity.parity_files("float_eggroll*.npz")]
    assert ids == ["float_eggroll", "a/float_eggroll_x"]


def test_parity_dir_naming_a_missing_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(parity.ENV, str(tmp_path / "nope"))
    with pytest.raises(pytest.UsageError, match="NPEGG_PARITY_DIR"):
        parity.parity_files("*.npz")
