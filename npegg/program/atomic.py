"""Atomic file writes, and the clean-up of what an interrupted write leaves behind.

Every file a run writes (checkpoint, metrics, sample, curve) goes through ``atomic_write``::

    .<name>.<8 hex>.tmp   written in the destination folder, flushed, fsynced
    os.replace(tmp, name)  one rename: a reader sees the old file or the new one, never half
    fsync(folder)          the rename itself survives a power cut (POSIX; best effort)

A process killed between the first and the second step (``kill -9``, a power cut) leaves its
temporary file behind. ``remove_stale_temps`` deletes those of one run folder; the program calls
it when a run starts or resumes (two runs writing into one folder at once are not supported).
"""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Callable, IO

#: the temporary names ``atomic_write`` uses: a dot, the final name, a dot, 8 hex digits, ".tmp"
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (matches ``TEMP_NAME``)."""
    return path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"


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
    """Delete the temporary files interrupted writes left in ``folder``; returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        if TEMP_NAME.match(p.name) and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass                                     # not ours to fight over: leave it
    return sorted(removed)
