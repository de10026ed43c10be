"""Vector files are read safely and against their schema: every hostile file of the probes is one
clear line (file, key, expected, found) and exit 1 from examples/check_vectors.py, never a
traceback, a 3 GB allocation or "ok"; the parity loader refuses the same files."""
import io
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import parity
from npegg.oracle.schema import VectorFileError, load_schema, validate
from npegg.oracle.vectorfile import MAX_BYTES, UnreadableVectorFile, read_vectors
from parity import REFERENCE_DIR, load
from test_check_vectors import run


def _member(a) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array(b, a, allow_pickle=False)
    return b.getvalue()


def _copy_with(dst: Path, src: Path, extra=None, replace=None) -> Path:
    """``src``'s members (``replace``d raw where given) plus ``extra`` raw members, deflated into ``dst``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            key = info.filename[:-4]
            zout.writestr(info.filename, (replace or {}).get(key, zin.read(info)))
        for key, raw in (extra or {}).items():
            zout.writestr(key + ".npy", raw)
    return dst


def _zeros_deflated(n: int, crc: int) -> tuple[bytes, int]:
    """(raw deflate blocks, crc-32 continued from ``crc``) of n zero bytes, n a multiple of 16 MiB,
    built in seconds (zlib would take a minute).

    After a full flush the compressor's state is reset, so every 16 MiB block of zeros compresses
    to the same bytes: one block, repeated, then an empty final block (b"\\x03\\x00")."""
    chunk = bytes(16 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    c.compress(chunk), c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    for _ in range(n // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    return block * (n // len(chunk)) + b"\x03\x00", crc


def _zip_bomb(path: Path, n: int, declare=None) -> Path:
    """qegg_fitness.npz's members (stored) and "pad.npy": a .npy header and n zero bytes, deflated
    to a few MB; the zip directory declares ``declare`` bytes for it (default: the truth). Written
    by hand (zip64 sizes) since zipfile cannot take a member already deflated."""
    with zipfile.ZipFile(REFERENCE_DIR / "qegg_fitness.npz") as z:
        members = [(i.filename, z.read(i)) for i in z.infolist()]
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": (n,)})
    head = head.getvalue()
    c = zlib.compressobj(9, zlib.DEFLATED, -15)                  # the header, then the zeros, as one stream
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    data, crc = _zeros_deflated(n, zlib.crc32(head))
    path.parent.mkdir(parents=True, exist_ok=True)
    out, central = bytearray(), bytearray()
    entries = [(name, 0, raw, len(raw), zlib.crc32(raw)) for name, raw in members]
    entries.append(("pad.npy", 8, first + data, len(head) + n, crc))
    for name, method, payload, size, crc32 in entries:
        size = declare if (declare is not None and name == "pad.npy") else size
        extra = struct.pack("<HHQQ", 1, 16, size, len(payload))
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0x21, crc32, 0xFFFFFFFF, 0xFFFFFFFF,
                           len(name), len(extra)) + name.encode() + extra + payload
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, 0, 0x21, crc32, 0xFFFFFFFF,
                               0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0, offset) + name.encode() + extra
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central),
                                 len(out), 0)
    path.write_bytes(bytes(out))
    return path


def test_every_shipped_file_follows_the_schema_as_version_1():
    """The reference's files carry no format_version: by the schema's rule they are version 1, and
    all of version 1 is checked (the parity tests read them through the same validation)."""
    kinds = set()
    for path in sorted(REFERENCE_DIR.glob("*.npz")):
        vec = read_vectors(path)
        assert "format_version" not in vec.arrays and vec.version == 1
        kinds.add(vec.kind)
    assert kinds == set(load_schema()["kinds"]) - {"float_lm"}      # float_lm is npegg's own format


def test_a_newer_or_malformed_format_version_is_refused():
    v = load(REFERENCE_DIR / "qegg_fitness.npz")
    with pytest.raises(VectorFileError, match=r"format_version 2: this reader knows versions 1"):
        validate("qegg_fitness.npz", {**v, "format_version": np.int32(2)})
    with pytest.raises(VectorFileError, match=r"format_version: expected an integer scalar"):
        validate("qegg_fitness.npz", {**v, "format_version": np.array([1, 2])})


def test_schema_refuses_unknown_and_missing_keys():
    v = load(REFERENCE_DIR / "qegg_update.npz")
    with pytest.raises(VectorFileError, match=r"u9/new/head: expected a key of this kind's schema"):
        validate("qegg_update.npz", {**v, "u9/new/head": v["u0/new/head"]})
    del v["u2/Z/blocks/att/Wf"]
    with pytest.raises(VectorFileError, match=r"u2/Z/blocks/att/Wf: expected this key"):
        validate("qegg_update.npz", v)


def test_a_zip_bomb_is_refused_before_it_is_inflated(tmp_path):
    """Probe: a 3 MB file whose member inflates to 3 GB was read in full and reported "ok". Now its
    declared size is refused from the zip directory; the checker runs under a 1.5 GB address-space
    limit to show nothing is inflated."""
    bomb = _zip_bomb(tmp_path / "bomb" / "qegg_fitness.npz", 179 << 24)           # 3.0 GB of zeros
    assert bomb.stat().st_size < 4 << 20
    with zipfile.ZipFile(bomb) as z, z.open("pad.npy") as f:                       # a real bomb: it inflates
        assert z.getinfo("pad.npy").file_size == (179 << 24) + 128
        assert f.read(128).startswith(b"\x93NUMPY") and f.read(64 << 20) == bytes(64 << 20)
    rc, out = run(bomb.parent, limit_bytes=1536 << 20)
    assert rc == 1 and "Traceback" not in out, out
    assert re.search(r"DAMAGED       .*qegg_fitness\.npz: member 'pad\.npy' declares 3,003,121,792 bytes "
                     r"uncompressed.*more than the 268,435,456 allowed", out), out
    with pytest.raises(UnreadableVectorFile, match="zip bomb"):
        parity.load(bomb)


def test_a_zip_bomb_lying_about_its_size_stops_at_the_declared_size(tmp_path):
    """The directory claims 1 kB for a member that inflates to 300 MB: zipfile stops at 1 kB and the
    CRC fails; a damaged file, not 300 MB in memory."""
    bomb = _zip_bomb(tmp_path / "liar" / "qegg_fitness.npz", 300 << 20, declare=1024)
    rc, out = run(bomb.parent, limit_bytes=1024 << 20)
    assert rc == 1 and "Traceback" not in out, out
    assert "DAMAGED" in out and "qegg_fitness.npz" in out, out


def test_a_huge_declared_shape_is_one_line(tmp_path):
    """Probe: a header declaring 10¹² elements over 152 bytes asked NumPy for 7 TiB (traceback)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
    diff = load(REFERENCE_DIR / "qegg_fitness.npz")["diff"]
    bad = _copy_with(tmp_path / "huge" / "qegg_fitness.npz", REFERENCE_DIR / "qegg_fitness.npz",
                     replace={"diff": header.getvalue() + diff.tobytes()})
    rc, out = run(bad.parent)
    assert rc == 1 and "Traceback" not in out, out
    assert "member 'diff' has 152 data bytes, its header says 8,000,000,000,000 (shape (1000000000000,)" in out, out


def test_a_wrongly_shaped_array_names_key_expected_and_found(tmp_path):
    """Probe: logits with 255 columns gave a traceback (or "0 of 146880 entries differ")."""
    v = load(REFERENCE_DIR / "egg_fwd_h16_l1_init.npz")
    v["pert/logits"] = v["pert/logits"][:, :, :-1]
    (tmp_path / "s").mkdir()
    np.savez_compressed(tmp_path / "s" / "egg_fwd_h16_l1_init.npz", **v)
    rc, out = run(tmp_path / "s")
    assert rc == 1 and "Traceback" not in out, out
    assert "INVALID       " in out and "pert/logits: expected shape (P, T, V) = (9, 64, 256), found (9, 64, 255)" in out, out


def test_an_out_of_range_token_names_key_index_and_range(tmp_path):
    """Probe: token 300 in a 256-byte vocabulary gave an IndexError traceback. Tokens stored as int32
    in a uint8 key are refused by dtype; where int32 tokens are allowed, by range."""
    v = load(REFERENCE_DIR / "egg_fwd_h16_l1_init.npz")
    v["base/tokens_in"] = v["base/tokens_in"].astype(np.int32)
    v["base/tokens_in"][3] = 300
    (tmp_path / "t").mkdir()
    np.savez_compressed(tmp_path / "t" / "egg_fwd_h16_l1_init.npz", **v)
    rc, out = run(tmp_path / "t")
    assert rc == 1 and "base/tokens_in: expected dtype uint8, found int32" in out and "Traceback" not in out, out
    u = load(REFERENCE_DIR / "int8_units.npz")
    u["emb/300x24/tokens"][5] = 300
    with pytest.raises(VectorFileError, match=r"emb/300x24/tokens\[5\]: expected a value in \[0, 299\].*found 300"):
        validate("int8_units.npz", u)


def test_the_limit_is_the_documented_one():
    assert MAX_BYTES == 256 << 20
