"""Byte-level corpora: load documents, split them by document, and read training batches.

Every source becomes one *stream* of bytes in which byte 0 marks the start of a document::

    stream = [0] + bytes(doc₀) + [0] + bytes(doc₁) + …        (N,) uint8

This is nano-egg's format, so its `.npy` files load as they are. Text never contains byte 0:
NUL bytes inside text files are removed (silently: in text they are almost always junk), so a 0
in the stream always means "a document starts here" and a model may reset its state on it.

Sources (``load_corpus``):

- ``None``: the default corpus shipped inside npegg, the same bytes on every Python and platform:
  CPython 3.11.7's standard-library ``.py`` files (PSF License 2.0), 173 documents, 2,986,837
  bytes, stored as ``corpus/cpython-3.11.7-lib.xz`` (xz, 563 kB) beside this module with its
  ``README.md``, ``FILES.txt`` and ``LICENSE.txt``. Reading it checks the decoded stream's sha256
  against ``DEFAULT_CORPUS_SHA256``; a damaged or altered file is an error naming it and both
  digests. ``stdlib_documents`` is how its documents were chosen from that interpreter (sorted
  paths, test folders skipped, the longest prefix within 3 MB); ``corpus/build.py`` rebuilds it.
- a ``.npy`` file: a 1-D uint8 stream as above (a stream that does not start with 0 gets one).
- a folder: every non-hidden file under it, recursively, in sorted relative-path order, that
  decodes as UTF-8 (others are skipped and counted); one file = one document.
- any other file: one document, its raw bytes (any encoding).

The split is by document: the last ``n_valid`` documents are the validation bytes, with
n_valid = ⌊n_docs · valid_fraction + ½⌋ (at least 1), or ``valid_docs`` when given. For the
500-document MiniPile file this gives documents 0..449 train, 450..499 valid, the split of
``../shared/data/README.md``. A corpus of a single document is split by bytes instead (the last
``valid_fraction`` of its bytes), and its description says so.
"""
from __future__ import annotations

import hashlib
import lzma
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_MAX_BYTES = 3_000_000
DEFAULT_CORPUS_VERSION = "3.11.7"                  # the CPython whose Lib/*.py the shipped corpus holds
DEFAULT_CORPUS = Path(__file__).parent / "corpus" / f"cpython-{DEFAULT_CORPUS_VERSION}-lib.xz"
DEFAULT_CORPUS_SHA256 = "e927b026d7068f92af3abc130abad49d04941590fec2324a1fe153c92f52fd56"   # decoded stream
SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})


class DataError(ValueError):
    """Missing, empty or unreadable training data; the message names the path and the problem."""


@dataclass(frozen=True)
class Corpus:
    """A byte corpus split by document. ``train`` (N_t,) uint8 and ``valid`` (N_v,) uint8."""
    train: np.ndarray
    valid: np.ndarray
    name: str
    n_docs: int                # documents in train + valid (after max_docs)
    n_valid_docs: int          # 0 when a single document was split by bytes
    description: str           # one human line: source, sizes, split
    source: str                # the path read, or "npegg:cpython-3.11.7-lib" for the default

def encode_documents(docs) -> np.ndarray:
    """Join documents into a stream ``[0] + doc₀ + [0] + doc₁ …`` with NUL bytes removed. → (N,) uint8."""
    return np.frombuffer(b"".join(b"\0" + bytes(d).replace(b"\0", b"") for d in docs), dtype=np.uint8).copy()


def doc_starts(stream: np.ndarray) -> np.ndarray:
    """Indices of the document-start bytes (the zeros) of a stream. → (n_docs,) int64."""
    return np.flatnonzero(stream == 0)


def stdlib_documents(max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[list[tuple[str, bytes]], Path, int]:
    """How the shipped corpus was chosen: this interpreter's stdlib ``.py`` files, sorted by relative
    path (test and package folders skipped), NULs removed, the longest prefix within ``max_bytes``
    (separators included). Run by ``corpus/build.py`` and by the test that proves the shipped bytes
    equal CPython 3.11.7's; ``npegg train`` never calls it.

    Returns ([(relative path, bytes), …], stdlib folder, number of files skipped as unreadable or not UTF-8).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise DataError(f"the Python standard library folder {root} does not exist (an embedded or zipped Python?)")
    rels = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in SKIP_DIRS]     # prune, never descend into tests
        rel = Path(folder).relative_to(root)
        rels += [(rel / f).as_posix() for f in files if f.endswith(".py")]
    rels.sort()
    docs, total, skipped = [], 0, 0
    for rel in rels:
        try:
            raw = (root / rel).read_bytes()
            raw.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            skipped += 1
            continue
        raw = raw.replace(b"\0", b"")
        if total + 1 + len(raw) > max_bytes:
            break                                   # longest sorted prefix that fits
        docs.append((rel, raw))
        total += 1 + len(raw)
    return docs, root, skipped


def default_stream(max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """The shipped default corpus's stream, checked against ``DEFAULT_CORPUS_SHA256``, cut to the
    longest prefix of whole documents within ``max_bytes``. → (N,) uint8.

    Raises ``DataError`` naming the file when it is missing, not xz, or decodes to other bytes.
    """
    path = DEFAULT_CORPUS
    try:
        raw = lzma.decompress(path.read_bytes(), format=lzma.FORMAT_XZ)
    except OSError as e:
        raise DataError(f"{path}: the shipped default corpus cannot be read ({e.strerror or e}); "
                        f"reinstall npegg or pass --data PATH") from e
    except lzma.LZMAError as e:
        raise DataError(f"{path}: the shipped default corpus is damaged (not valid xz: {e}); expected its "
                        f"decoded bytes to have sha256 {DEFAULT_CORPUS_SHA256}; reinstall npegg") from e
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DEFAULT_CORPUS_SHA256:
        raise DataError(f"{path}: the shipped default corpus was altered: its decoded bytes have sha256 "
                        f"{digest}, expected {DEFAULT_CORPUS_SHA256}; reinstall npegg")
    stream = np.frombuffer(raw, dtype=np.uint8)
    ends = np.append(doc_starts(stream)[1:], len(stream))          # (n_docs,) one past each document
    fits = ends[ends <= max_bytes]                                  # whole documents only
    return stream[:fits[-1] if fits.size else 0].copy()


def shown(text) -> str:
    """A path or name as it can be printed and drawn: bytes that are not UTF-8 (kept by the
    file system API as surrogate escapes, ``os.fsdecode``) become U+FFFD."""
    return os.fsencode(str(text)).decode("utf-8", errors="replace")


def _folder_files(folder: Path) -> list[Path]:
    """Non-hidden regular files under ``folder`` (a symlink to a file counts, one to a folder is
    not followed), in sorted relative-path order. The walk keeps its own stack of folders instead
    of recursing, so a tree thousands of folders deep is read like a flat one."""
    found, stack = [], [folder]
    while stack:
        here = stack.pop()
        try:
            entries = list(os.scandir(here))
        except OSError:
            continue                                    # an unreadable folder: its files are not there
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.is_file():                       # regular files only: no FIFOs, devices
                    found.append(Path(e.path))
            except OSError:
                continue
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _folder_documents(folder: Path) -> tuple[list[bytes], int]:
    """Non-hidden files under ``folder`` that decode as UTF-8, in sorted relative-path order."""
    docs, skipped = [], 0
    for p in _folder_files(folder):
        try:
            raw = p.read_bytes()
            raw.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            skipped += 1
            continue
        docs.append(raw)
    return docs, skipped


def absolute_path(path) -> Path:
    """``path`` (``~`` expanded) made absolute against the current folder; DataError when it is
    empty, or relative and the current folder no longer exists (deleted under a running shell)."""
    if str(path) == "":                 # Path("") is the current folder: a path was meant and not given
        raise DataError("the data path is an empty string; give a file or folder, or omit it for the default")
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    try:
        return Path(os.getcwd()) / p
    except OSError as e:
        raise DataError(f"{shown(p)}: a relative path, but the current folder no longer exists "
                        f"({e.strerror or e}); cd into an existing folder or give an absolute path") from None


def source_bytes(path) -> int:
    """Bytes a source holds on disk (the files ``read_stream`` would read); 0 for the default."""
    if path is None:
        return 0
    p = Path(path).expanduser()
    try:
        if p.is_dir():
            return sum(f.stat().st_size for f in _folder_files(p))
        return p.stat().st_size if p.is_file() else 0
    except OSError:
        return 0


def check_fits(path, available: int | None) -> None:
    """DataError when reading ``path`` would need more memory than ``available`` bytes: its bytes
    are held twice while the stream is built (the files' bytes and the stream)."""
    size = source_bytes(path)
    if available is not None and 2 * size > available:
        raise DataError(f"{shown(Path(path).expanduser())}: {size / 1e9:,.1f} GB of data (read into memory twice "
                        f"while its stream is built), and this machine has {available / 1e9:,.1f} GB available; "
                        f"use a smaller file or folder (a 1-D uint8 .npy stream of the documents you want)")


def _read_npy(path: Path) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as e:   # noqa: BLE001 — numpy raises many types for bad files; all mean "unreadable"
        raise DataError(f"{path}: cannot read as a .npy array ({type(e).__name__}: {e})") from e
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 1:
        raise DataError(f"{path}: expected a 1-D uint8 byte stream, found "
                        f"{getattr(a, 'dtype', type(a).__name__)} of shape {getattr(a, 'shape', '?')}")
    if a.size and a[0] != 0:
        a = np.concatenate([np.zeros(1, np.uint8), a])   # the bytes before the first 0 are a document too
    return a


def read_stream(path, stdlib_max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[np.ndarray, str, str]:
    """Read any source into a stream. Returns (stream (N,) uint8, name, note about what was read)."""
    if path is None:
        note = (f"the shipped corpus: CPython {DEFAULT_CORPUS_VERSION}'s standard-library .py files "
                f"(sha256 {DEFAULT_CORPUS_SHA256[:12]}…)")
        return default_stream(stdlib_max_bytes), "stdlib", note
    if str(path) == "":
        raise DataError("the data path is an empty string; give a file or folder, or omit it for the default")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{shown(p)}: no such file or folder")
    if not (p.is_dir() or p.is_file()):          # a device (/dev/zero never ends), a FIFO (blocks), a socket
        raise DataError(f"{shown(p)}: not a regular file or folder (a device, pipe or socket cannot be read as a corpus)")
    from .preflight import available_memory
    check_fits(p, available_memory())
    try:
        if p.is_dir():
            docs, skipped = _folder_documents(p)
            stream = encode_documents(docs)
            note = f"text files under {p}{f', {skipped} non-UTF-8 or unreadable skipped' if skipped else ''}"
        elif p.suffix.lower() == ".npy":
            stream, note = _read_npy(p), f"byte stream {p}"
        else:
            stream, note = encode_documents([p.read_bytes()]), f"text file {p}"
    except OSError as e:
        raise DataError(f"{shown(p)}: cannot read ({e.strerror or e})") from e
    except MemoryError:
        raise DataError(f"{shown(p)}: does not fit in the memory available; use a smaller file or folder") from None
    return stream, shown(p.stem or p.name), shown(note)


def split_documents(stream: np.ndarray, valid_fraction: float = 0.1,
                    valid_docs: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Split a stream by document: the last n_valid documents are validation.

    n_valid = valid_docs if given, else max(1, ⌊n_docs · valid_fraction + ½⌋), at most n_docs − 1.
    With one document, split its bytes at ⌊N · (1 − valid_fraction)⌋ and return n_valid = 0.
    Returns (train (N_t,) uint8, valid (N_v,) uint8, n_valid).
    """
    starts = doc_starts(stream)                         # (n_docs,)
    n_docs = len(starts)
    if n_docs == 1:
        cut = int(len(stream) * (1.0 - valid_fraction))
        return stream[:cut], stream[cut:], 0
    n_valid = valid_docs if valid_docs is not None else max(1, int(n_docs * valid_fraction + 0.5))
    if not 1 <= n_valid <= n_docs - 1:
        raise DataError(f"cannot put {n_valid} of {n_docs} documents in the validation split "
                        f"(need 1 ≤ valid_docs ≤ {n_docs - 1})")
    cut = starts[n_docs - n_valid]
    return stream[:cut], stream[cut:], n_valid


def load_corpus(path=None, max_docs: int | None = None, valid_fraction: float = 0.1,
                valid_docs: int | None = None, stdlib_max_bytes: int = DEFAULT_MAX_BYTES) -> Corpus:
    """Load a corpus as one stream [0] doc₀ [0] doc₁ … (N,) uint8, keep its first ``max_docs``
    documents and split it by document: the last n_valid = max(1, ⌊n_docs · valid_fraction + ½⌋)
    documents (or ``valid_docs``) are the validation bytes. path: None (the shipped corpus,
    CPython 3.11.7's standard-library .py files),
    a .npy stream, a folder (one file = one document) or a file (one document); ``stdlib_max_bytes``
    keeps the default's longest prefix of whole documents within that many bytes.

    Raises ``DataError`` naming the path when the data is missing, unreadable, empty, or too small
    to give non-empty train and validation bytes.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise DataError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    stream, name, note = read_stream(path, stdlib_max_bytes)
    where = "the shipped default corpus" if path is None else str(path)
    starts = doc_starts(stream)
    if max_docs is not None:
        if max_docs < 1:
            raise DataError(f"max_docs must be ≥ 1, got {max_docs}")
        if max_docs < len(starts):
            stream, starts = stream[:starts[max_docs]], starts[:max_docs]
    if len(starts) == 0:
        raise DataError(f"{where}: empty, no documents found")
    if len(stream) == len(starts):                      # nothing but separators
        raise DataError(f"{where}: no text found, only {len(starts)} empty document(s)")
    train, valid, n_valid = split_documents(stream, valid_fraction, valid_docs)
    if len(train) < 2 or len(valid) < 1:
        raise DataError(f"{where}: too small to split ({len(stream)} bytes); "
                        f"need at least a few bytes for training and for validation")
    split = (f"{len(starts) - n_valid}/{n_valid} documents" if n_valid
             else f"one document split by bytes at {1 - valid_fraction:.0%}")
    description = (f"{note}: {len(starts)} documents, {len(stream):,} bytes; "
                   f"train {len(train):,} / valid {len(valid):,} bytes ({split})")
    return Corpus(train=train, valid=valid, name=name, n_docs=len(starts), n_valid_docs=n_valid,
                  description=description,
                  source=f"npegg:cpython-{DEFAULT_CORPUS_VERSION}-lib" if path is None else str(path))


class BatchReader:
    """nano-egg's training batches: P members in groups of ``group_size`` read their own stream.

    With S = P / group_size streams and T = tokens_per_update, the N training bytes are cut as in
    nano-egg's ``run.py``: ``segments = ⌊(N − S) / (T·S)⌋``, each stream is L = segments·T + 1
    consecutive bytes, stream s starts at byte s·L. Each epoch stream s yields the window
    ``stream_s[p_s : p_s + T + 1]`` and moves p_s ← p_s + T; when the next window would pass the
    stream's end, p_s ← 0 (so windows overlap by one byte: the last target is the next input).
    Member m reads stream ⌊m / group_size⌋, so both members of an antithetic pair see the same bytes.

    When the data is too small for S disjoint streams (segments = 0), each stream is the whole
    training data read circularly from its own offset ⌊s·N/S⌋ (L = N, indices taken mod N).

    The position is the only state, ``{"pos": (S,) int64}``: save it in a checkpoint and
    ``next(state)`` continues bit-exactly. ``group_size = 0`` (the noiser's "no groups") means 1.
    Mirrors: nano-egg ``run.py`` (``truncated_dataset``, ``start_tok``, ``jnp.repeat(…, group_size)``).
    """

    def __init__(self, data: np.ndarray, pop_size: int, group_size: int, tokens_per_update: int):
        self.data = np.asarray(data, dtype=np.uint8)    # (N,) uint8
        self.group_size = max(1, int(group_size))
        self.tokens_per_update = T = int(tokens_per_update)
        if T < 1 or pop_size < 1 or pop_size % self.group_size:
            raise ValueError(f"need tokens_per_update ≥ 1 and pop_size ({pop_size}) a positive "
                             f"multiple of group_size ({self.group_size})")
        n = len(self.data)
        if n < T + 1:
            raise DataError(f"{n:,} training bytes cannot fill one window of --tokens-per-update {T} + 1 bytes; "
                            f"use more data or a smaller --tokens-per-update")
        self.n_streams = S = pop_size // self.group_size
        segments = (n - S) // (T * S)
        if segments >= 1:                               # nano-egg's disjoint layout
            self.stream_len = segments * T + 1
            self.offsets = np.arange(S, dtype=np.int64) * self.stream_len      # (S,)
        else:                                           # small data: overlapping circular streams
            self.stream_len = n
            self.offsets = np.arange(S, dtype=np.int64) * n // S               # (S,)

    def init(self) -> dict:
        """The starting position: every stream at its first byte."""
        return {"pos": np.zeros(self.n_streams, dtype=np.int64)}

    def next(self, state: dict) -> tuple[np.ndarray, dict]:
        """One epoch's windows and the next state. → (P, T+1) uint8; inputs w[:, :-1], targets w[:, 1:]."""
        pos = np.asarray(state["pos"], dtype=np.int64)                          # (S,)
        T = self.tokens_per_update
        if pos.shape != (self.n_streams,) or pos.min() < 0 or pos.max() + T + 1 > self.stream_len:
            raise DataError(f"reader position of shape {pos.shape} (max {pos.max() if pos.size else '-'}) "
                            f"does not fit {self.n_streams} streams of {self.stream_len} bytes: "
                            f"was it saved with other data, pop_size or group_size?")
        idx = (self.offsets + pos)[:, None] + np.arange(T + 1)                 # (S, T+1)
        windows = self.data[idx % len(self.data)]                              # (S, T+1) uint8
        step = pos + T
        step[step + T + 1 > self.stream_len] = 0                               # wrap to the stream start
        return np.repeat(windows, self.group_size, axis=0), {"pos": step}      # (P, T+1) uint8
