"""Atomic file writes, and the clean-up of what an interrupted write leaves behind.

Every file a run writes (checkpoint, metrics, sample, curve) goes through ``atomic_write``::

    .<name>.npegg-<pid>-<8 hex>.tmp   written in the destination folder, flushed, fsynced
    os.replace(tmp, name)             one rename: a reader sees the old file or the new one, never half
    fsync(folder)                     the rename itself survives a power cut (POSIX; best effort)

A process killed between the first and the second step (``kill -9``, a power cut) leaves its
temporary file behind. ``remove_stale_temps`` deletes those of one run folder: only names of that
exact form (``npegg-`` and the writer's pid make them npegg's own, never a user's file that merely
looks similar), and only when the writer is no longer running. The program calls it when it has
taken the run folder's lock (``run_folder.py``), so no other ``npegg train`` writes there.
"""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Callable, IO

#: the temporary names ``atomic_write`` uses: ".", the final name, ".npegg-", the writer's pid, "-", 8 hex digits, ".tmp"
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.npegg-(?P<pid>[1-9][0-9]{0,9})-[0-9a-f]{8}\.tmp$")


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (matches ``TEMP_NAME``, with this process's pid)."""
    return path.parent / f".{path.name}.npegg-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


def process_running(pid: int) -> bool:
    """Whether a process ``pid`` exists (it may belong to another user). On Windows, where
    ``os.kill(pid, 0)`` would send a Ctrl-C, every pid counts as running (stale temps stay)."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):        # no such process; a pid no process can have
        return False
    except OSError:                                    # PermissionError: another user's process
        return True
    return True


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; silently skipped where folders cannot be fsynced."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:                                      # Windows, or a file system that cannot fsync folders
        pass


def atomic_write(path, write: Callable[[IO[bytes]], None] | bytes | str) -> Path:
    """Write ``path`` all at once: ``write`` is bytes, text (UTF-8) or a function of a binary file.

    On any failure (or interrupt) the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as f:
            if isinstance(write, str):
                f.write(write.encode("utf-8"))
            elif isinstance(write, (bytes, bytearray)):
                f.write(write)
            else:
                write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
    return path


def remove_stale_temps(folder) -> list[Path]:
    """Delete the temporary files that interrupted npegg writes left in ``folder`` (``TEMP_NAME``, and
    their writer no longer running); returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        m = TEMP_NAME.match(p.name)
        if m and not process_running(int(m["pid"])) and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass                                     # not ours to fight over: leave it
    return sorted(removed)
