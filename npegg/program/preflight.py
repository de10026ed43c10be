"""Checks made before a run starts: will it fit in memory and its noise in the noise table, can its
folder be written, is there room.

A run that cannot finish should say so before its first epoch, not after a fifth of it. Memory
is estimated from the sizes alone (nothing is allocated)::

    parameters      n = a·D² + b·D + c per layer count (exact: fitted on D = 1, 2, 3 models)
    model + Adam    n × 4 B × 6        params, μ, ν, G, the update, the new params (float mode)
    population      P·L·D × 4 B × 3    hidden states: carried, new, reset copy
                  + P·T·D × 4 B × 8    one layer's activations over the epoch's window (the MLP and
                                       head run on ~2 MiB member chunks and add nothing that grows)
    noise           C·N·(3 + 4L)·w     the members' noise of one forward call: C members per call
                                       (``shard.program_chunk``), N = ``noise_slice`` numbers each for
                                       the widest matrix, at most 3 + 4L matrices, w = 4 B (1 B int)
    fixed           96 MiB             noise table (32 MiB) and its slice cache (64 MiB)
    data            S × 2              the --data files' S bytes, read and turned into a stream
                  + S × W              with W > 1 workers: each holds the training bytes

In int mode parameters and states are int8 and a forward step widens a (P, D) slice to int64, so
the population term is P·L·D × 1 B × 3 + P·D × 8 B × 12. The estimate is meant to be the right
order of magnitude: a run is refused only when it exceeds the memory available, so an estimate
off by a factor of two still lets every run that fits start.

A checkpoint holds the parameters (and μ, ν in float mode), the hidden states and the history;
its size is estimated within a few percent (measured against real checkpoints in the tests)::

    checkpoint  n·w·c + P·L·D·w + 32 B·(E + 1) + 64 KiB     w = 4 B, c = 3 (float); w = 1 B, c = 1 (int);
                                                            E epochs of history; headers, manifest, config
    disk        2 · checkpoint − the checkpoint it replaces  a save writes the new file beside the old
              + 160 B·E + 256 KiB                           metrics.csv/json, sample.txt, curve.png
"""
from __future__ import annotations

import errno
import os
import shutil
from functools import lru_cache
from pathlib import Path

from .atomic import temp_path

_FIXED = 96 << 20


class PreflightError(ValueError):
    """A run that cannot work on this machine; the message names the flag to change."""


@lru_cache(maxsize=None)
def _counts(mode: str, cell: str, n_layers: int, mlp_ratio: int = 4, direct: bool = False) -> tuple[int, int, int]:
    """Parameter counts of tiny models (D = 1, 2, 3) with ``n_layers`` layers."""
    from .. import keys as K
    from ..tree import flatten
    import numpy as np
    if mode == "int":
        from ..models.egg import EGG
        make = lambda d: EGG.rand_init(K.key(0), d, n_layers, 256).params        # noqa: E731
    else:
        from ..models.lm import ByteLM
        make = lambda d: ByteLM.rand_init(K.key(0), d, n_layers, cell=cell, mlp_ratio=mlp_ratio,  # noqa: E731
                                          direct_path=direct).params
    return tuple(sum(int(np.size(v)) for v in flatten(make(d)).values()) for d in (1, 2, 3))


def param_count(mode: str, cell: str, hidden_dim: int, n_layers: int, mlp_ratio: int = 4,
                direct_path: bool = False) -> int:
    """Exact parameter count: quadratic in D (fitted on D = 1, 2, 3), linear in L (L = 1, 2) and,
    from M = 1 on, in the MLP ratio M (fitted on M = 1, 2: no model is built M·D wide).
    ``mlp_ratio`` and ``direct_path`` are the float model's (the int8 EGG has neither knob)."""
    if mode == "float" and mlp_ratio > 2:
        one, two = (param_count(mode, cell, hidden_dim, n_layers, m, direct_path) for m in (1, 2))
        return one + (mlp_ratio - 1) * (two - one)
    def at(layers):
        f1, f2, f3 = _counts(mode, cell, layers, mlp_ratio if mode == "float" else 4,
                             bool(direct_path) and mode == "float")
        a2 = f3 - 2 * f2 + f1                            # 2a
        b = f2 - f1 - 3 * a2 // 2
        c = f1 - a2 // 2 - b
        return a2 * hidden_dim ** 2 // 2 + b * hidden_dim + c
    one, two = at(1), at(2)
    return one + (n_layers - 1) * (two - one)


def memory_parts(cfg) -> dict[str, int]:
    """Estimated bytes of a run, by what drives them: {"model": …, "population": …, "noise": …, "fixed": …}.

    Float mode: model = n·4 B·6 (params, μ, ν, G, update, new params), population =
    P·L·D·4 B·3 + P·T·D·4 B·8, noise = C·N·(3 + 4L)·4 B (module docstring), fixed = 96 MiB (noise
    table and slice cache). Int mode: model = n·3 B, population = P·L·D·3 B + P·D·8 B·12, noise
    with 1 B numbers. n is ``param_count`` of the run's model.
    """
    D, L, P, T = cfg.hidden_dim, cfg.n_layers, cfg.pop_size, cfg.tokens_per_update
    from .shard import program_chunk
    n = param_count(cfg.mode, cfg.cell, D, L, cfg.mlp_ratio, cfg.direct_path)
    noise = 0 if cfg.method == "backprop" else program_chunk(cfg) * noise_slice(cfg) * (3 + 4 * L)
    if cfg.mode == "int":
        return {"model": n * 3, "population": P * L * D * 3 + P * D * 8 * 12, "noise": noise, "fixed": _FIXED}
    return {"model": n * 4 * 6, "population": P * L * D * 4 * 3 + P * T * D * 4 * 8, "noise": noise * 4,
            "fixed": _FIXED}


def noise_slice(cfg) -> int:
    """Entries one member reads from the noise table for the model's widest matrix (…, a, b):
    (a + b)·R, the widest being the direct table (256 + 256, float mode with the direct path), the
    embedding and head (256 + D), a layer's MLP ((M + 1)·D; M = 4 in int mode) or its D × D matrices."""
    D = cfg.hidden_dim
    ratio = 4 if cfg.mode == "int" else cfg.mlp_ratio
    widest = max(256 + D, (ratio + 1) * D if ratio else 0, 2 * D,
                 512 if cfg.mode == "float" and cfg.direct_path else 0)
    return widest * cfg.rank


def check_noise(cfg) -> None:
    """PreflightError naming --rank when a member's noise for the widest matrix (``noise_slice``) is
    longer than the noise table the run draws it from (float 2²³ entries, int 2²⁵)."""
    from ..noise import Int8NoiseTable, NoiseTable
    if cfg.method == "backprop":                 # no noise is drawn
        return
    table = (Int8NoiseTable() if cfg.mode == "int" else NoiseTable()).size      # sizes only: nothing is built
    if noise_slice(cfg) > table:
        widest = noise_slice(cfg) // cfg.rank
        if table // widest:                      # a smaller rank fits
            raise PreflightError(f"--rank {cfg.rank}: each member reads {widest:,}·R numbers from the run's noise "
                                 f"table for its widest matrix, and the table holds {table:,}, so --rank can be at "
                                 f"most {table // widest:,} here")
        flags = f"--mlp-ratio {cfg.mlp_ratio} / --hidden-dim" if cfg.mode == "float" and cfg.mlp_ratio else "--hidden-dim"
        raise PreflightError(f"{flags} {cfg.hidden_dim}: a matrix of the model is too wide for the run's noise table "
                             f"({widest:,} numbers per member at rank 1, and the table holds {table:,}); "
                             f"choose smaller values")


def checkpoint_bytes(cfg) -> int:
    """Estimated size of one checkpoint: parameters (+ μ, ν in float mode), hidden states, the
    history (four numbers per epoch) and 64 KiB of headers, manifest and config."""
    n = param_count(cfg.mode, cfg.cell, cfg.hidden_dim, cfg.n_layers, cfg.mlp_ratio, cfg.direct_path)
    width = 1 if cfg.mode == "int" else 4
    copies = 1 if cfg.mode == "int" else 3
    return (n * width * copies + cfg.pop_size * cfg.n_layers * cfg.hidden_dim * width + 32 * (cfg.epochs + 1)
            + (64 << 10))


#: the files of a run folder that a run replaces (each is written beside the old one, then renamed)
RUN_FILES = ("checkpoint.npz", "metrics.csv", "metrics.json", "sample.txt", "curve.png")


def disk_bytes(cfg, out) -> int:
    """Free bytes a run needs in its folder ``out``: the next checkpoint is written beside the one it
    replaces, so two checkpoints, less the one already there (resuming in place, ``--overwrite``),
    plus the metrics (~160 B per epoch), sample and curve (256 KiB)."""
    there = 0
    for name in RUN_FILES:
        try:
            there += (Path(out) / name).stat().st_size
        except OSError:
            pass
    return max(0, 2 * checkpoint_bytes(cfg) + 160 * cfg.epochs + (256 << 10) - there)


def short_name(stem: str, limit: int = 80) -> str:
    """A data file's stem as part of a default run folder's name: unchanged when it takes at most
    ``limit`` bytes, else cut to fit, with 8 hex digits of its sha256 so that two long names that
    share a beginning stay apart (a folder name may hold 255 bytes, and the mode, cell and time
    are added to it)."""
    raw = os.fsencode(stem)
    if len(raw) <= limit:
        return stem
    import hashlib
    head = raw[:limit - 9].decode("utf-8", "ignore")    # no character cut in half, no undecodable byte
    return f"{head}-{hashlib.sha256(raw).hexdigest()[:8]}"


def available_memory() -> int | None:
    """Bytes this process could still allocate: MemAvailable (Linux), else physical memory; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def check_memory(cfg, available: int | None = None, workers: int = 1) -> None:
    """PreflightError naming the flags when the estimate exceeds the memory available.

    With W > 1 workers every worker holds its own replica of the model, the optimizer and the
    noise table beside the coordinator's, while the population is shared out among them::

        need = (W + 1) · (model + fixed) + W · noise + population + data
                                                (W = 1: model + fixed + noise + population + data)
        data = S · 2 (+ S · W with W > 1)                         S: bytes of the --data files
    """
    from .data import source_bytes
    available = available_memory() if available is None else available
    parts = memory_parts(cfg)
    if workers > 1:
        parts = {**parts, "model": parts["model"] * (workers + 1), "fixed": parts["fixed"] * (workers + 1),
                 "noise": parts["noise"] * workers}
    size = source_bytes(cfg.data)
    parts["data"] = size * (2 + (workers if workers > 1 else 0))
    need = sum(parts.values())
    if available is None or need <= available:
        return
    if parts["data"] >= max(parts["model"], parts["population"]):
        raise PreflightError(f"--data {cfg.data}: {_gb(size)} of data needs about {_gb(parts['data'])} of memory "
                             f"(read, then turned into one stream{', and a copy in every worker' if workers > 1 else ''}); "
                             f"with the run, {_gb(need)}, and this machine has {_gb(available)} available; "
                             f"use a smaller file or folder" + (" or fewer --workers" if workers > 1 else ""))
    if parts["noise"] >= max(parts["model"], parts["population"]):
        check_noise(cfg)                            # a rank the noise table cannot hold is said as such
        raise PreflightError(f"--rank {cfg.rank}: each member's noise is {noise_slice(cfg):,} numbers for the widest "
                             f"matrix alone, about {_gb(parts['noise'])} for the members of one forward call"
                             f"{' in each worker' if workers > 1 else ''}; with the run, {_gb(need)}, and this machine "
                             f"has {_gb(available)} available; choose a smaller --rank")
    model_flags = f"--hidden-dim {cfg.hidden_dim} / --n-layers {cfg.n_layers}"
    model_flags += f" / --mlp-ratio {cfg.mlp_ratio}" if cfg.mode == "float" and cfg.mlp_ratio else ""
    pop_flags = f"--pop-size {cfg.pop_size}" + ("" if cfg.mode == "int" else f" / --tokens-per-update {cfg.tokens_per_update}")
    pop_flags += f" / --hidden-dim {cfg.hidden_dim}"
    n = param_count(cfg.mode, cfg.cell, cfg.hidden_dim, cfg.n_layers, cfg.mlp_ratio, cfg.direct_path)
    model = f"{n:,} parameters with the optimizer's copies {_gb(parts['model'])}"
    population = f"the population's states and activations {_gb(parts['population'])}"
    flags, why = ((model_flags, f"{model}; {population}") if parts["model"] >= parts["population"]
                  else (pop_flags, f"{population}; {model}"))
    over = f" over {workers} workers" if workers > 1 else ""
    raise PreflightError(f"{flags}: this run needs about {_gb(need)} of memory{over} ({why}), and this machine "
                         f"has {_gb(available)} available; choose smaller values"
                         + (" or fewer --workers" if workers > 1 else ""))


def check_out(out: Path, need: int) -> None:
    """PreflightError when ``out`` cannot be created and written, or its disk has less than ``need`` bytes free.

    A probe file is written and removed, and folders created for the probe are removed again,
    so nothing is left behind whether the check passes or fails.
    """
    out = Path(out)
    created = []
    try:
        missing = [p for p in [out, *out.parents] if not p.exists()]
        for p in reversed(missing):
            p.mkdir()
            created.append(p)
        probe = temp_path(out / "checkpoint.npz")
        with open(probe, "xb") as f:
            f.write(b"npegg: can this folder be written?")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
        free = shutil.disk_usage(out).free
    except OSError as e:
        raise PreflightError(f"--out {out}: cannot write there ({e.strerror or e})") from e
    finally:
        for p in reversed(created):
            try:
                p.rmdir()
            except OSError:
                pass
    if free < need:
        raise PreflightError(f"--out {out}: the disk has {_gb(free)} free, and this run needs about {_gb(need)} more "
                             f"(a checkpoint is written beside the one it replaces, then the metrics and curve); "
                             f"free some space or choose another --out")


def check_disk(cfg, out) -> None:
    """``check_out`` with ``disk_bytes``; when most of the need is the history of a very long run
    (224 B per epoch: twice 32 in the checkpoints, 160 in the metrics), the error names --epochs."""
    need = disk_bytes(cfg, out)
    try:
        check_out(out, need)
    except PreflightError as e:
        per_epoch = (2 * 32 + 160) * cfg.epochs
        if e.__cause__ is None and per_epoch > need // 2:
            raise PreflightError(f"--epochs {cfg.epochs}: the run's history (about 224 bytes per epoch in the "
                                 f"checkpoint and the metrics) needs {_gb(per_epoch)} on the disk of --out {out}, "
                                 f"which has {_gb(shutil.disk_usage(out if Path(out).exists() else Path(out).parent).free)} free; "
                                 f"choose fewer epochs") from None
        raise


def disk_full(e: OSError) -> bool:
    """The write failed for want of room: no space, a quota, or a file size limit (RLIMIT_FSIZE)."""
    return e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG)


def disk_full_message(e: OSError, out: Path, epoch: int) -> str:
    """One paragraph for a run stopped by a full disk: what failed, and the checkpoint that is
    still there (read and verified again here, so the epoch it names is the one on disk)."""
    from .checkpoint import load_checkpoint
    ckpt = Path(out) / "checkpoint.npz"
    what = f"{e.strerror or e}" + (f" writing {Path(e.filename).name}" if e.filename else "")
    try:
        kept = load_checkpoint(ckpt).scalars.get("epoch")
        left = (f"the last checkpoint, {ckpt} (epoch {int(kept)}), is intact; free some space, then continue "
                f"with  npegg train --resume {out}")
    except Exception:        # noqa: BLE001 — no checkpoint yet, or one that does not verify: say so
        left = "no checkpoint was saved yet"
    return f"--out {out}: the disk is full ({what}); the run stopped at epoch {epoch}; {left}"
