"""Noise as a pure function of (seed, parameter, epoch, member): a shared table and an index hash.

Nothing here is a stream. A member's noise for one parameter leaf is a *slice* of a fixed table,
and where the slice starts is an integer hash of (leaf key, epoch, member). So the noise of any
member can be rebuilt alone, in any order, at forward time and again at update time, on any
backend, and it is never stored. This is the design of the OpenAI ES starter (a shared noise
table, random offsets) with nano-egg's index hash; the table itself is built from integers only
so that every backend can rebuild it bit for bit.

The algorithm, precisely enough to re-implement (all integer arithmetic is unsigned):

1. **Table.** ``NoiseTable(seed, log2_size=n)`` has N = 2ⁿ float32 entries. Entry i is::

       z     = splitmix64(seed + (i + 1) · 0x9E3779B97F4A7C15  mod 2⁶⁴)
               where splitmix64(x): x = (x ⊕ x>>30)·0xBF58476D1CE4E5B9; x = (x ⊕ x>>27)·0x94D049BB133111EB;
                                    x = x ⊕ x>>31        (mod 2⁶⁴)
       S     = Σ_{k=0..7} byte_k(z)                        integer in [0, 2040]
       t[i]  = float32(S − 1020) · C                       one float32 multiply, correctly rounded
       C     = float32(1/√43690) = 0x3B9CC4BF (bits)        43690 = 8·(256² − 1)/12 = Var(S)

   So t is an Irwin–Hall(8) variable scaled to mean 0 and variance 1: symmetric, bounded by ±4.88,
   kurtosis 2.85 (a Gaussian has 3). Mean and covariance are exactly those of a standard normal;
   the score-function derivation of ES assumes the Gaussian density, so with this noise the
   gradient estimate gains a term of order σ² from the excess kurtosis (tutorial chapter 4
   measures it). The low-rank products A Bᵀ/√r are not Gaussian anyway. In exchange the table is the
   same bits on every IEEE machine: no log, cos or erfinv whose last bit varies between libms.
   The int8 table (``Int8NoiseTable``) is ``trunc(16 · t[i])`` in [−78, 78], the fixed-point
   analogue of nano-egg's ``trunc(16 · z)``.

2. **Start index** of member n's slice for a leaf with key k (uint32 pair, see ``npegg.keys``) at
   epoch e, with ``noise_reuse`` ρ (nano-egg, docs/int8-spec.md §6)::

       te    = 0 if ρ == 0 else ⌊e / ρ⌋          (ρ = 0: the same noise every epoch)
       K0    = fold_in(k, te)[0]                  (threefry, word 0)
       q     = n >> 1                             (antithetic partners 2q, 2q+1 share the slice)
       h     = (((q >> 16) ⊕ q) · 0x45d9f3b) mod 2³²
       start = (K0 ⊕ h) mod N

   With N = 2³⁰ this is bit-identical to the reference's start index (checked in the tests).
   Slices of different pairs may overlap (their starts are hashed, not spaced apart), so two
   members' noise is not exactly independent; tutorial chapter 4 counts the overlaps.

3. **Slice.** ``size`` consecutive entries from ``start``. Where the slice would run past the end,
   ``overflow="wrap"`` (the default for float noise) continues at entry 0, so every slice has its
   full length; ``overflow="clamp"`` starts it at ``N − size`` instead, as the reference's
   ``dynamic_slice`` does (the default for the int8 table, to mirror nano-egg).

4. **Factors** for a leaf of shape (a, b) at rank r (``lowrank``): ``M = slice(size=(a+b)·r)``
   reshaped row-major to (a+b, r); ``B = M[:b]`` (input side, b × r) and ``A = M[b:]`` (output
   side, a × r). B comes first, as in the reference. **Full-rank** noise (``full``) for a leaf of
   shape s: ``slice(size=∏s)`` reshaped to s (float), or for the int8 table the product of entry
   pairs ``t[2j] · t[2j+1]`` as int32, as nano-egg does.

   The antithetic sign (+1 for even n, −1 for odd n) and the scale σ are *not* applied here:
   the noiser applies them (``A ← sign · σ/√r · A``), so that a source can be swapped.

A noise *source* is any object with ``lowrank(key, epoch, members, shape, rank, noise_reuse)``
and ``full(key, epoch, members, shape, noise_reuse)``; ``InjectedNoise`` is one that returns
given arrays, for tests and parity checks.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import keys as _keys

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
HASH_MULT = 0x45D9F3B
#: C = float32(1/sqrt(43690)); its bits are fixed here so no backend depends on a libm.
TABLE_SCALE = np.array([0x3B9CC4BF], dtype=np.uint32).view(np.float32)[0]
_CHUNK = 1 << 20
#: the most bytes one strided view of the table may span: the platform's index limit, 2³¹ − 1 on a
#: 32-bit NumPy (wasm32, armv7); on a 64-bit one the whole window matrix is one view, so a gather
#: is one fancy index (no sort into blocks)
VIEW_BYTES = int(np.iinfo(np.intp).max)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 output function on uint64 (wrapping)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def table_entries(seed: int, start: int, stop: int) -> np.ndarray:
    """Entries [start, stop) of the float32 noise table for ``seed`` (the formula of step 1)."""
    i = np.arange(start, stop, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = splitmix64(np.uint64(seed) + (i + np.uint64(1)) * _GAMMA)
    s = z.view(np.uint8).reshape(-1, 8).sum(axis=1, dtype=np.int32) - 1020  # (n,) int in [−1020, 1020]
    return s.astype(np.float32) * TABLE_SCALE


@lru_cache(maxsize=1 << 14)
def _epoch_word(key_bytes: bytes, te: int) -> np.uint32:
    """K0 = fold_in(k, te)[0] of step 2 for a key given as its uint32 bytes.

    Memoized: it is a pure function of its arguments, and the threefry rounds in NumPy cost
    ~60 µs, paid by every leaf of every perturbed forward otherwise.
    """
    return _keys.fold_in(np.frombuffer(key_bytes, dtype=np.uint32), te)[0]


def start_indices(key, epoch: int, members, noise_reuse: int, table_size: int) -> np.ndarray:
    """Raw start index (step 2) of each member's slice: (P,) int64 in [0, table_size)."""
    te = 0 if noise_reuse == 0 else int(epoch) // int(noise_reuse)
    k0 = _epoch_word(np.asarray(key, dtype=np.uint32).tobytes(), te)
    q = (np.asarray(members, dtype=np.int64) >> 1).astype(np.uint32)  # (P,)
    with np.errstate(over="ignore"):
        h = ((q >> np.uint32(16)) ^ q) * np.uint32(HASH_MULT)
    return ((k0 ^ h).astype(np.int64)) & (table_size - 1)


def parse_iterinfo(epoch, members) -> tuple[int, np.ndarray]:
    """Validate an iterinfo pair; returns (epoch as int, members as (P,) int64)."""
    if type(members) is np.ndarray and members.dtype == np.int64 and members.ndim == 1 \
            and isinstance(epoch, (int, np.integer)) and not isinstance(epoch, bool):
        if members.size and members.min() < 0:    # the common case, checked without conversions
            raise ValueError("iterinfo members (member ids) must be >= 0")
        return int(epoch), members
    members = np.atleast_1d(np.asarray(members))
    if members.ndim != 1 or not np.issubdtype(members.dtype, np.integer):
        raise ValueError(f"iterinfo members must be a 1-D integer array, got {members.dtype} {members.shape}")
    if members.size and members.min() < 0:
        raise ValueError("iterinfo members (member ids) must be >= 0")
    ep = np.asarray(epoch)
    if ep.ndim and not (ep == ep.flat[0]).all():
        raise ValueError("iterinfo epoch must be one value for the whole population")
    return int(ep.flat[0]) if ep.ndim else int(ep), members.astype(np.int64)


@dataclass
class NoiseTable:
    """The shared float32 noise table t (N = 2^log2_size entries, t[i] = (S_i − 1020)/√43690 with S_i
    an Irwin–Hall(8) byte sum) and its index hash start = (K0 ⊕ h(n >> 1)) mod N; the module
    docstring's steps 1–4 give every detail needed to rebuild it bit for bit.

    seed: table seed. log2_size: the table has 2**log2_size entries (default 2²³ = 32 MiB).
    overflow: "wrap" or "clamp" (step 3). cache_bytes: slices already built for the same
    (key, epoch, members, shape) are reused from a small read-only cache, so that a forward
    over T time steps draws each member's noise once; it changes no value. ``gather_for``: the
    population a forward is about to draw noise for in member chunks; a chunk's request (a run
    of members) is then a view of the whole population's noise, drawn once per leaf. (The
    update's one member per pair is drawn afresh: its rows then lie in memory as in any
    process, so the GEMM reads the same layout whatever the worker count.)
    What ``lowrank`` and ``full`` return is the caller's: a fresh array, or read-only when it is
    shared (cached), so a caller may scale a writeable one in place.
    """

    #: members 2q and 2q + 1 get the same unit noise (step 2 hashes q = n >> 1), so an update may
    #: sum their weights first (``EggRoll._combines_pairs``); a subclass that breaks this says False
    pairs_share_noise = True
    seed: int = 0
    log2_size: int = 23
    overflow: str = "wrap"
    cache_bytes: int = 256 << 20
    _table: np.ndarray | None = field(default=None, init=False, repr=False)
    _ext: np.ndarray | None = field(default=None, init=False, repr=False)
    _cache: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False)
    _views: dict = field(default_factory=dict, init=False, repr=False)
    _cached: int = field(default=0, init=False, repr=False)
    _population: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        for name, value, ok, allowed in (("seed", self.seed, lambda v: 0 <= v < 2**64, "in [0, 2**64)"),
                                         ("log2_size", self.log2_size, lambda v: 4 <= v <= 31, "in [4, 31]"),
                                         ("cache_bytes", self.cache_bytes, lambda v: v >= 0, ">= 0")):
            integer = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            if not (integer and ok(value)):                 # 1.5 or True would be truncated silently
                raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
        if self.overflow not in ("wrap", "clamp"):
            raise ValueError(f"overflow must be 'wrap' or 'clamp', got {self.overflow!r}")

    def __reduce__(self):
        """Pickles as its settings (the table is rebuilt from the seed where it is unpickled)."""
        return (NoiseTable, (self.seed, self.log2_size, self.overflow, self.cache_bytes))

    @property
    def size(self) -> int:
        """N = 2^log2_size entries."""
        return 1 << int(self.log2_size)

    def _build(self) -> np.ndarray:
        parts = [table_entries(self.seed, s, min(s + _CHUNK, self.size)) for s in range(0, self.size, _CHUNK)]
        return np.concatenate(parts)

    @property
    def table(self) -> np.ndarray:
        """The whole table (built on first use, then kept)."""
        if self._table is None:
            self._table = self._build()
            self._table.flags.writeable = False
        return self._table

    def slices(self, starts: np.ndarray, size: int) -> np.ndarray:
        """(P, size) copies of the table from each start, with the overflow rule applied."""
        if size > self.size:
            raise ValueError(f"a noise slice of {size} entries does not fit a table of {self.size}; "
                             f"raise log2_size")
        starts = np.asarray(starts, dtype=np.int64)
        if self.overflow == "clamp":
            starts = np.minimum(starts, self.size - size)
        per = self._rows_per_view(size)
        if per >= self._rows(size):
            return self._view(size, 0)[starts]  # (P, size): one row copied per member
        out = np.empty((len(starts), size), self.table.dtype)          # (P, size)
        block = starts // per
        order = np.argsort(block, kind="stable")
        cuts = np.flatnonzero(np.diff(block[order])) + 1
        for group in np.split(order, cuts):                           # members whose starts share a view
            b = int(block[group[0]])
            out[group] = self._view(size, b)[starts[group] - b * per]
        return out

    def _rows(self, size: int) -> int:
        """Rows of the whole window matrix: N for "wrap", N − size + 1 for "clamp"."""
        return self.size if self.overflow == "wrap" else self.size - size + 1

    def _rows_per_view(self, size: int) -> int:
        """Rows of one view, so that a view holds at most ``VIEW_BYTES`` bytes: a 32-bit NumPy (wasm32,
        armv7) cannot make an array, even a view, whose size in bytes overflows its index."""
        return max(1, VIEW_BYTES // (size * self.table.itemsize))

    def _view(self, size: int, b: int) -> np.ndarray:
        """Block b of the read-only window matrix W (rows, size), whose row i is the slice of
        ``size`` entries from i: rows b·R … (b+1)·R − 1 with R = ``_rows_per_view(size)``.

        For "wrap" the rows read the table extended by its own first entries, t[i mod N] for
        i < N + size. Views cost no memory and are kept per (size, block) (building one costs
        ~25 µs, per leaf per forward).
        """
        view = self._views.get((size, b))
        if view is None:
            t = self.table
            if self.overflow == "wrap":
                if self._ext is None or len(self._ext) - self.size < size:
                    pad = max(size, 1 << 12)
                    self._ext = np.concatenate([t, t[:pad]])  # t[i mod N] for i < N + pad
                    self._views.clear()                       # views of the old extension
                t = self._ext
            per = self._rows_per_view(size)
            lo, hi = b * per, min((b + 1) * per, self._rows(size))
            view = sliding_window_view(t[lo: hi + size - 1], size)   # (hi − lo, size)
            if len(self._views) >= 256:
                self._views.clear()
            self._views[(size, b)] = view
        return view

    # -- the source interface -------------------------------------------------------------------
    def gather_for(self, members) -> None:
        """Draw noise for the population ``members`` (a contiguous ascending range of ids, else
        None: no population) whole: a later request for a contiguous run of them gets a view of
        the population's noise, which is built once per (leaf, epoch) and cached. Only speed
        changes: a row of noise is the same bits however it was gathered."""
        members = None if members is None else np.asarray(members, dtype=np.int64)
        if members is not None and not (members.ndim == 1 and members.size > 1 and
                                        np.array_equal(members, np.arange(members[0], members[0] + members.size))):
            members = None
        self._population = members

    def _cached_or(self, tag, key, epoch, members, noise_reuse, shape, rank, build, member_bytes=None):
        """``build(starts)`` for these members, or its cached result; a run of the ``gather_for``
        population is sliced from the population's (member_bytes: one member's bytes of it)."""
        pop = self._population
        if pop is not None and member_bytes is not None and 0 < len(members) < len(pop) \
                and member_bytes * len(pop) <= self.cache_bytes // 4:
            lo = int(members[0]) - int(pop[0])
            hi = lo + len(members)
            if 0 <= lo and hi <= len(pop) and pop[lo:hi].tobytes() == members.tobytes():
                whole = self._cached_or(tag, key, epoch, pop, noise_reuse, shape, rank, build)   # cached: it fits
                return tuple(o[lo:hi] for o in whole) if isinstance(whole, tuple) else whole[lo:hi]
        if self.cache_bytes == 0:                                  # no cache: nothing to look up or keep
            return build(start_indices(key, epoch, members, noise_reuse, self.size))
        te = 0 if noise_reuse == 0 else int(epoch) // int(noise_reuse)
        ck = (tag, np.asarray(key).tobytes(), te, tuple(shape), rank, members.tobytes())
        hit = self._cache.get(ck)
        if hit is not None:
            self._cache.move_to_end(ck)
            return hit
        out = build(start_indices(key, epoch, members, noise_reuse, self.size))
        nbytes = sum(o.nbytes for o in out) if isinstance(out, tuple) else out.nbytes
        if nbytes <= self.cache_bytes // 4:
            for o in out if isinstance(out, tuple) else (out,):
                o.flags.writeable = False
            self._cache[ck] = out
            self._cached += nbytes
            while self._cached > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached -= sum(o.nbytes for o in old) if isinstance(old, tuple) else old.nbytes
        return out

    def lowrank(self, key, epoch, members, shape, rank, noise_reuse):
        """Unit low-rank factors of every member: A (P, a, r), B (P, b, r), unsigned, unscaled."""
        a, b = shape
        members = np.asarray(members, dtype=np.int64)

        def build(starts):
            m = self.slices(starts, (a + b) * rank).reshape(len(starts), a + b, rank)  # (P, a+b, r)
            return m[:, b:], m[:, :b]
        return self._cached_or("lr", key, epoch, members, noise_reuse, shape, rank, build,
                               (a + b) * rank * self.table.itemsize)

    def full(self, key, epoch, members, shape, noise_reuse):
        """Unit full-rank noise of every member: (P, *shape), unsigned, unscaled."""
        members = np.asarray(members, dtype=np.int64)
        n = int(np.prod(shape, dtype=np.int64))

        def build(starts):
            return self.slices(starts, n).reshape((len(starts),) + tuple(shape))
        return self._cached_or("full", key, epoch, members, noise_reuse, shape, 0, build, n * self.table.itemsize)


@dataclass
class Int8NoiseTable(NoiseTable):
    """The int8 table ``trunc(16 · t[i])`` (values in [−78, 78]) with nano-egg's slicing.

    Defaults: 2²⁵ entries (32 MiB; the reference uses 2³⁰ = 1 GiB) and ``overflow="clamp"``.
    Full-rank noise is the int32 product of consecutive entry pairs (docs/int8-spec.md §6).
    """

    log2_size: int = 25
    overflow: str = "clamp"

    def _build(self) -> np.ndarray:
        parts = []
        for s in range(0, self.size, _CHUNK):
            f = table_entries(self.seed, s, min(s + _CHUNK, self.size)) * np.float32(16)  # exact ×16
            parts.append(np.trunc(f).astype(np.int8))  # trunc toward zero, as the reference
        return np.concatenate(parts)

    def full(self, key, epoch, members, shape, noise_reuse):
        """(P, *shape) int32: entry pairs multiplied, ``t[s+2j] · t[s+2j+1]`` (docs/int8-spec.md §6)."""
        members = np.asarray(members, dtype=np.int64)
        n = int(np.prod(shape, dtype=np.int64))

        def build(starts):
            m = self.slices(starts, 2 * n).astype(np.int32)  # (P, 2n)
            return (m[:, 0::2] * m[:, 1::2]).reshape((len(starts),) + tuple(shape))
        return self._cached_or("full", key, epoch, members, noise_reuse, shape, 0, build, 4 * n)


class InjectedNoise:
    """A noise source that returns given unit factors, for tests and parity checks.

    ``records`` maps a key (anything hashable after ``np.asarray(key).tobytes()``) to a dict with
    "members" (P,) and either "A" (P, a, r) and "B" (P, b, r), or "E" (P, *shape). Requests
    pick rows by member id; the epoch is ignored (record what the epoch would have produced).
    """

    def __init__(self, records: dict):
        self.records = {k if isinstance(k, bytes) else np.asarray(k).tobytes(): v for k, v in records.items()}

    def _rows(self, key, members):
        rec = self.records[np.asarray(key).tobytes()]
        pos = {int(m): i for i, m in enumerate(rec["members"])}
        return rec, np.array([pos[int(m)] for m in np.asarray(members)])

    def lowrank(self, key, epoch, members, shape, rank, noise_reuse):
        """The recorded (A (P, a, r), B (P, b, r)) of ``members`` for the leaf with ``key``."""
        rec, rows = self._rows(key, members)
        return rec["A"][rows], rec["B"][rows]

    def full(self, key, epoch, members, shape, noise_reuse):
        """The recorded full-rank noise E (P, *shape) of ``members`` for the leaf with ``key``."""
        rec, rows = self._rows(key, members)
        return rec["E"][rows]
