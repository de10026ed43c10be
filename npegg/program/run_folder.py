"""A run folder belongs to one process at a time: its lock, unique new folders, and the run's own files.

    RUN/.npegg-lock                               the lock: an OS file lock (``flock``) held by the one
                                                  process training in RUN, with that process's pid as text
    RUN/checkpoint.npz, metrics.csv, metrics.json written together at every save, at the same epoch
    RUN/sample.txt, curve.png                     written when the run has reached its last epoch

The operating system releases the lock when its process ends, however it ends (exit, exception,
``kill -9``, out of memory), so a lock is never stale: the file may stay, the lock does not. A
second ``npegg train`` that wants the folder (``--out RUN``, ``--overwrite``, ``--resume RUN``)
cannot take it and is refused (``FolderBusy``, naming the holder's pid) before it changes anything.
``eval`` and ``sample`` only read (every file is replaced whole by a rename) and take no lock.

New folders are made with one ``mkdir`` each (atomic: of two processes asking for the same name,
one gets it and the other tries the next name), so runs started at once never share a folder.
"""
from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path

LOCK = ".npegg-lock"
CHECKPOINT, METRICS, REPORTS = "checkpoint.npz", ("metrics.csv", "metrics.json"), ("sample.txt", "curve.png")

try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True
except ImportError:                                     # Windows: a byte-range lock on the lock file's first byte
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True


class FolderBusy(Exception):
    """Another process holds the run folder's lock; ``pid`` is its pid (None when unreadable)."""

    def __init__(self, path: Path, pid: int | None):
        self.path, self.pid = Path(path), pid
        who = f"npegg process {pid}" if pid else "another npegg process"
        super().__init__(f"run folder {path} is in use by {who}")


class RunFolder:
    """A locked run folder: ``path``; ``created`` when this process made it. ``release()`` (or the
    end of a ``with`` block) unlocks it, and removes a folder this process made and left empty."""

    def __init__(self, path: Path, fd: int, created: bool):
        self.path, self.fd, self.created = Path(path), fd, created

    def release(self) -> None:
        if self.fd is None:
            return
        if self.created:
            try:
                if [p.name for p in self.path.iterdir()] == [LOCK]:   # nothing of the run was written
                    (self.path / LOCK).unlink()
                    self.path.rmdir()
            except OSError:
                pass                                   # someone put something there: leave it all
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def holder(path) -> int | None:
    """The pid written in ``path``'s lock file, or None."""
    try:
        text = (Path(path) / LOCK).read_text(encoding="ascii", errors="replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def in_use(path) -> FolderBusy | None:
    """``FolderBusy`` when a process holds ``path``'s lock, else None; creates nothing (a look only)."""
    try:
        fd = os.open(Path(path) / LOCK, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None                                     # no lock file (or not one to open): nobody's lock
    try:
        return None if _try_lock(fd) else FolderBusy(path, holder(path))
    finally:
        os.close(fd)                                    # closing drops the lock this look may have taken


def claim(path, created: bool = False) -> RunFolder:
    """Lock the run folder ``path`` for this process, making it (and its parents) when missing.

    Raises ``FolderBusy`` when another process holds it, and OSError when it cannot be made or its
    lock file cannot be opened.
    """
    path = Path(path)
    while True:
        if not path.is_dir():
            try:
                path.mkdir(parents=True)
                created = True
            except FileExistsError:
                pass                                    # made meanwhile by someone else: lock it below
        try:
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except FileNotFoundError:
            continue                                    # its maker released it empty and removed it: again
        try:
            if not _try_lock(fd):
                raise FolderBusy(path, holder(path))
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path / LOCK, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode("ascii"))
                return RunFolder(path, fd, created)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)                                    # locked a lock file that was removed meanwhile: again


def claim_new(parent, stem: str) -> RunFolder:
    """A new locked folder ``parent/stem``, or ``stem-1``, ``stem-2`` … when taken (one atomic ``mkdir`` each)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        path = parent / (stem if n == 0 else f"{stem}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return claim(path, created=True)


def contents(path) -> list[str]:
    """The names in a run folder, its lock file left out."""
    return sorted(p.name for p in Path(path).iterdir() if p.name != LOCK)


def clear_outputs(path, names) -> None:
    """Remove the named files of an earlier run (files or symlinks; folders of those names are left)."""
    for name in names:
        p = Path(path) / name
        if p.is_symlink() or p.is_file():
            p.unlink(missing_ok=True)
