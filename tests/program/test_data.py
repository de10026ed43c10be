"""Corpora, the split by document, and the nano-egg batch reader."""
from __future__ import annotations

import hashlib
import lzma
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from npegg.program import data
from npegg.program.data import BatchReader, DataError, doc_starts, encode_documents, load_corpus

CORPUS_DIR = Path(data.__file__).parent / "corpus"
MINIPILE = Path(__file__).resolve().parents[3] / "shared" / "data" / "minipile_valid_1000.npy"


def write_docs(folder: Path, docs: dict[str, bytes]) -> None:
    for rel, data in docs.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


# ---- sources --------------------------------------------------------------------------------

def test_encode_documents_separates_with_zero_and_strips_nul():
    """Each document is [0] + its bytes; NUL inside text is removed so 0 only marks starts."""
    stream = encode_documents([b"ab", b"c\0d", b""])
    assert bytes(stream) == b"\0ab\0cd\0"
    assert doc_starts(stream).tolist() == [0, 3, 6]


def test_folder_is_recursive_sorted_and_skips_hidden_and_binary(tmp_path):
    write_docs(tmp_path, {"z.txt": b"zz", "b/d.txt": b"dd", "a.txt": b"aa", "b/c.md": b"cc",
                          ".hidden/x.txt": b"xx", ".env": b"ee", "blob.bin": b"\xff\xfe\x00\x81"})
    c = load_corpus(tmp_path, valid_docs=1)
    stream = np.concatenate([c.train, c.valid])
    assert bytes(stream) == b"\0aa\0cc\0dd\0zz"          # sorted relative paths: a, b/c, b/d, z
    assert (c.n_docs, c.n_valid_docs, bytes(c.valid)) == (4, 1, b"\0zz")
    assert "1 non-UTF-8 or unreadable skipped" in c.description


def test_text_file_is_one_document_split_by_bytes(tmp_path):
    f = tmp_path / "book.txt"
    f.write_bytes(b"0123456789" * 10)
    c = load_corpus(f, valid_fraction=0.2)
    assert (len(c.train), len(c.valid), c.n_docs, c.n_valid_docs) == (80, 21, 1, 0)
    assert c.train[0] == 0 and bytes(c.valid) == (b"\0" + b"0123456789" * 10)[80:]
    assert "split by bytes" in c.description


def test_npy_stream_and_max_docs(tmp_path):
    stream = encode_documents([b"one", b"two", b"three", b"four"])
    np.save(tmp_path / "s.npy", stream)
    c = load_corpus(tmp_path / "s.npy", max_docs=3, valid_docs=1)
    assert bytes(c.train) == b"\0one\0two" and bytes(c.valid) == b"\0three"
    assert c.n_docs == 3 and c.name == "s"


def test_npy_without_leading_zero_gets_one(tmp_path):
    np.save(tmp_path / "raw.npy", np.frombuffer(b"head\0tail", np.uint8))
    c = load_corpus(tmp_path / "raw.npy", valid_docs=1)
    assert bytes(c.train) == b"\0head" and bytes(c.valid) == b"\0tail"


@pytest.mark.parametrize("case, needle", [
    ("missing", "no such file"),
    ("empty_file", "no text"),
    ("empty_folder", "no documents"),
    ("binary_folder", "no documents"),
    ("zeros_npy", "no text"),
    ("float_npy", "uint8"),
    ("corrupt_npy", "cannot read"),
])
def test_bad_data_raises_data_error_naming_the_path(tmp_path, case, needle):
    p = tmp_path / case
    if case == "empty_file":
        p.write_bytes(b"\0\0")
    elif case in ("empty_folder", "binary_folder"):
        p.mkdir()
        if case == "binary_folder":
            (p / "x.bin").write_bytes(b"\x80\x81\xff")
    elif case.endswith("npy"):
        p = tmp_path / f"{case}.npy"
        if case == "zeros_npy":
            np.save(p, np.zeros(5, np.uint8))
        elif case == "float_npy":
            np.save(p, np.ones(5, np.float32))
        else:
            p.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError) as e:
        load_corpus(p)
    assert str(p) in str(e.value) and needle in str(e.value)


def test_too_many_valid_docs_is_an_error(tmp_path):
    np.save(tmp_path / "s.npy", encode_documents([b"a", b"b"]))
    with pytest.raises(DataError, match="valid_docs"):
        load_corpus(tmp_path / "s.npy", valid_docs=2)


# ---- the default corpus and the shared corpus -------------------------------------------------

def test_default_corpus_is_the_shipped_stream_on_every_python():
    """load_corpus(None) reads the shipped xz, whose decoded bytes have the recorded sha256 whatever
    Python runs this; FILES.txt lists one line (size, path) per document, in stream order."""
    c = load_corpus(None)
    stream = np.concatenate([c.train, c.valid])
    assert hashlib.sha256(stream.tobytes()).hexdigest() == data.DEFAULT_CORPUS_SHA256
    assert (c.n_docs, c.n_valid_docs, len(stream)) == (173, 17, 2_986_837)
    assert c.source == "npegg:cpython-3.11.7-lib" and "CPython 3.11.7" in c.description
    starts = doc_starts(stream)
    sizes = np.diff(np.append(starts, len(stream))) - 1                 # each document's bytes
    listed = [line.split("\t") for line in (CORPUS_DIR / "FILES.txt").read_text().splitlines()]
    assert [int(n) for n, _ in listed] == sizes.tolist()
    assert listed[0][1] == "__future__.py" and bytes(stream[1:1 + sizes[0]]).startswith(b'"""Record of phased-in')
    assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in (CORPUS_DIR / "LICENSE.txt").read_text()


@pytest.mark.skipif(sys.implementation.name != "cpython" or sys.version.split()[0] != "3.11.7",
                    reason="the shipped corpus is CPython 3.11.7's standard library; only that interpreter has it")
def test_shipped_corpus_is_byte_identical_to_cpython_3_11_7_stdlib():
    """On CPython 3.11.7 the shipped stream is exactly the stream the old default built from the
    running interpreter's own stdlib, so every number measured on that default still holds."""
    docs, _, skipped = data.stdlib_documents()
    built = encode_documents([raw for _, raw in docs])
    assert skipped == 0
    assert np.array_equal(built, data.default_stream())
    listed = [line.split("\t")[1] for line in (CORPUS_DIR / "FILES.txt").read_text().splitlines()]
    assert listed == [rel for rel, _ in docs]


def test_default_corpus_prefix_is_whole_documents_within_max_bytes():
    a = load_corpus(None, stdlib_max_bytes=300_000)
    b = load_corpus(None, stdlib_max_bytes=300_000)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.valid, b.valid)
    assert len(a.train) + len(a.valid) <= 300_000 and a.n_docs >= 5
    assert a.valid[0] == 0 and np.count_nonzero(a.valid == 0) == a.n_valid_docs
    full = data.default_stream()
    cut = len(a.train) + len(a.valid)
    assert np.array_equal(np.concatenate([a.train, a.valid]), full[:cut]) and full[cut] == 0   # ends at a boundary
    next_end = doc_starts(full)[a.n_docs + 1]
    assert next_end > 300_000                                           # the next document would not fit
    assert b"import" in a.train.tobytes()


@pytest.mark.parametrize("damage", ["altered", "not_xz", "missing"])
def test_damaged_shipped_corpus_is_an_error_naming_the_file_and_digests(tmp_path, monkeypatch, damage):
    """A changed shipped file never trains silently: the error names the file (and, when it decodes,
    both digests)."""
    bad = tmp_path / "cpython-3.11.7-lib.xz"
    if damage == "altered":
        raw = bytearray(lzma.decompress(data.DEFAULT_CORPUS.read_bytes()))
        raw[1000] ^= 1
        bad.write_bytes(lzma.compress(bytes(raw)))
        match = f"altered.*sha256 [0-9a-f]{{64}}, expected {data.DEFAULT_CORPUS_SHA256}"
    elif damage == "not_xz":
        bad.write_bytes(data.DEFAULT_CORPUS.read_bytes()[:-100])     # truncated
        match = f"damaged.*{data.DEFAULT_CORPUS_SHA256}"
    else:
        match = "cannot be read"
    monkeypatch.setattr(data, "DEFAULT_CORPUS", bad)
    with pytest.raises(DataError, match=match) as e:
        load_corpus(None)
    assert str(bad) in str(e.value)


@pytest.mark.skipif(not MINIPILE.is_file(), reason=f"{MINIPILE} not present (../shared/data is not in a fresh clone)")
def test_minipile_split_matches_shared_readme():
    """README: documents 0..449 train (2,462,445 bytes), 450..499 valid (315,441 bytes)."""
    c = load_corpus(MINIPILE)
    assert (c.n_docs, c.n_valid_docs, len(c.train), len(c.valid)) == (500, 50, 2_462_445, 315_441)
    assert np.array_equal(load_corpus(MINIPILE, valid_docs=50).valid, c.valid)


# ---- the batch reader -------------------------------------------------------------------------

def nano_egg_windows(data, pop_size, group_size, T, epoch):
    """Slow twin: nano-egg run.py's batch for one epoch, written as it does."""
    S = pop_size // group_size
    segments = (data.size - S) // (T * S)
    truncated = data[:S * (segments * T + 1)].reshape(S, segments * T + 1)
    start = (epoch % segments) * T
    return np.repeat(truncated[:, start:start + T + 1], group_size, axis=0)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(200, 3000), s=st.integers(1, 6), g=st.sampled_from([1, 2, 4]), T=st.integers(1, 20),
       seed=st.integers(0, 2**16))
def test_reader_equals_nano_egg_formula(n, s, g, T, seed):
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)
    assume((n - s) // (T * s) >= 1)                          # big enough for nano-egg's layout
    reader = BatchReader(data, s * g, g, T)
    state = reader.init()
    for epoch in range(7):
        w, state = reader.next(state)
        assert np.array_equal(w, nano_egg_windows(data, s * g, g, T, epoch))


def test_reader_groups_share_bytes_and_windows_chain():
    data = np.arange(1000, dtype=np.int64).astype(np.uint8)
    reader = BatchReader(data, pop_size=8, group_size=2, tokens_per_update=10)
    w0, state = reader.next(reader.init())
    w1, _ = reader.next(state)
    assert w0.shape == (8, 11) and w0.dtype == np.uint8
    assert np.array_equal(w0[0::2], w0[1::2])              # pairs read the same stream
    assert np.array_equal(w1[:, 0], w0[:, -1])             # last target is the next first input


def test_reader_wraps_to_stream_start():
    data = np.arange(100, dtype=np.uint8)
    reader = BatchReader(data, pop_size=2, group_size=1, tokens_per_update=10)   # 4 segments of 10
    state, first = reader.init(), None
    for epoch in range(5):
        w, state = reader.next(state)
        first = w if epoch == 0 else first
    assert reader.stream_len == 41 and np.array_equal(w, first)


def test_reader_small_data_reads_circularly_from_spread_offsets():
    data = np.arange(30, dtype=np.uint8)
    reader = BatchReader(data, pop_size=6, group_size=1, tokens_per_update=8)   # 6 × 9 > 30 bytes
    w, state = reader.next(reader.init())
    w, state = reader.next(state)
    expect = (np.array([0, 5, 10, 15, 20, 25])[:, None] + 8 + np.arange(9)) % 30
    assert np.array_equal(w, expect)


def test_reader_resume_is_bit_exact():
    data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)
    reader = BatchReader(data, 16, 2, 7)
    state, straight = reader.init(), []
    for _ in range(50):
        w, state = reader.next(state)
        straight.append(w)
    state = reader.init()
    for _ in range(20):
        _, state = reader.next(state)
    saved = {"pos": state["pos"].copy()}                     # what a checkpoint stores
    resumed = BatchReader(data.copy(), 16, 2, 7)
    for k in range(20, 50):
        w, saved = resumed.next(saved)
        assert np.array_equal(w, straight[k])


def test_reader_rejects_foreign_state_and_tiny_data():
    reader = BatchReader(np.zeros(500, np.uint8), 8, 2, 10)
    with pytest.raises(DataError, match="streams"):
        reader.next({"pos": np.zeros(3, np.int64)})
    with pytest.raises(DataError, match="--tokens-per-update"):
        BatchReader(np.zeros(5, np.uint8), 2, 1, 10)
    with pytest.raises(ValueError, match="multiple of group_size"):
        BatchReader(np.zeros(500, np.uint8), 7, 2, 10)
