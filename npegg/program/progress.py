"""Training progress for people: one line updated in place on a terminal, plain lines elsewhere.

On a terminal (``stream.isatty()``) every ``update`` rewrites the same line with ``\\r``::

    epoch   12/50 | train 7.412 bpb | valid 7.380 bpb | 41.2 kB/s | 0:12 elapsed, ETA 0:38

When the stream is not a terminal (CI logs, pipes, files) a carriage return would garble the
log, so the same text is printed as an ordinary line on the first epoch, every ``every`` epochs,
and on the last. No dependency: just ``write`` and ``flush`` on the stream.

``QuietStream`` wraps the program's output so that a reader who goes away (``npegg train | head``,
quitting ``less``, a closed stdout, ``/dev/full``) stops the printing, not the run.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Iterable, Optional


def format_duration(seconds: float) -> str:
    """4.2 → '0:04', 3725 → '1:02:05'."""
    s = int(round(max(0.0, seconds)))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_rate(bytes_per_s: float) -> str:
    """950 → '950 B/s', 41234 → '41.2 kB/s', 3.2e6 → '3.2 MB/s'."""
    for unit, scale in (("MB/s", 1e6), ("kB/s", 1e3)):
        if bytes_per_s >= scale:
            return f"{bytes_per_s / scale:.1f} {unit}"
    return f"{bytes_per_s:.0f} B/s"


def format_table(rows: Iterable[tuple[str, Optional[float]]], headers: tuple[str, str] = ("method", "bpb"),
                 digits: int = 3) -> str:
    """Rows (name, value) as aligned text: names left, values right, None shown as '-'.

    >>> print(format_table([("uniform", 8.0), ("model", 3.25)]))
    method     bpb
    -------  -----
    uniform  8.000
    model    3.250
    """
    cells = [(str(name), "-" if v is None else f"{v:.{digits}f}") for name, v in rows]
    w0 = max([len(headers[0])] + [len(a) for a, _ in cells])
    w1 = max([len(headers[1])] + [len(b) for _, b in cells])
    lines = [f"{headers[0]:<{w0}}  {headers[1]:>{w1}}", f"{'-' * w0}  {'-' * w1}"]
    lines += [f"{a:<{w0}}  {b:>{w1}}" for a, b in cells]
    return "\n".join(lines)


class QuietStream:
    """A text stream whose first failed write or flush (a broken pipe, a closed or full stdout) ends
    its output silently: later writes are dropped, and the file descriptor underneath is pointed at
    the null device, so that Python's own flush at exit finds nothing to complain about."""

    def __init__(self, stream):
        self.stream, self.broken = stream, stream is None

    def _quiet(self) -> None:
        self.broken = True
        try:
            fd = self.stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except (OSError, ValueError, AttributeError):   # no descriptor (a StringIO), or already closed
            pass

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.stream.write(text)
            except UnicodeEncodeError:                   # an ASCII-only stdout (PYTHONIOENCODING=ascii, LANG=C
                enc = self.stream.encoding               # on old Pythons): what it cannot show is printed as '?'
                self.write(text.encode(enc, errors="replace").decode(enc))
            except (OSError, ValueError):                # BrokenPipeError, ENOSPC, "I/O on closed file"
                self._quiet()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self._quiet()

    def isatty(self) -> bool:
        try:
            return not self.broken and bool(self.stream.isatty())
        except (OSError, ValueError, AttributeError):
            return False


class Progress:
    """A progress line for epochs ``start_epoch+1 … total_epochs``.

    ``bytes_per_epoch``: bytes of the data stream read per epoch (S·T for S streams of T bytes);
    with ``member_bytes_per_epoch`` (P·T: bytes through the model, every member counted) the line
    shows both rates, ``12.8 kB/s data, 102.4 kB/s member-bytes``.

    ``update(epoch, train_bpb, valid_bpb)`` after each epoch (``epoch`` counts epochs done);
    ``message(text)`` prints a permanent line without breaking the live one; ``close()`` at the end.
    ``tty`` overrides terminal detection and ``clock`` the time source (both for tests).
    """

    def __init__(self, total_epochs: int, bytes_per_epoch: int, stream=None, every: Optional[int] = None,
                 start_epoch: int = 0, tty: Optional[bool] = None, clock: Callable[[], float] = time.monotonic,
                 member_bytes_per_epoch: Optional[int] = None):
        self.stream = sys.stdout if stream is None else stream
        if tty is None:
            try:
                tty = bool(self.stream.isatty())
            except (AttributeError, ValueError):         # no isatty, or a closed stream
                tty = False
        self.tty, self.clock = tty, clock
        self.total, self.bytes_per_epoch, self.start_epoch = total_epochs, bytes_per_epoch, start_epoch
        self.member_bytes_per_epoch = member_bytes_per_epoch
        self.every = every or max(1, (total_epochs - start_epoch) // 10)
        self.t0 = clock()
        self.valid_bpb: Optional[float] = None
        self._live = ""                                  # the line currently shown in place

    def line(self, epoch: int, train_bpb: float) -> str:
        """The status text for ``epoch`` (no newline)."""
        done, elapsed = epoch - self.start_epoch, self.clock() - self.t0
        rate = done * self.bytes_per_epoch / elapsed if elapsed > 0 else 0.0
        speed = format_rate(rate)
        if self.member_bytes_per_epoch is not None:
            members = done * self.member_bytes_per_epoch / elapsed if elapsed > 0 else 0.0
            speed = f"{speed} data, {format_rate(members)} member-bytes"
        eta = elapsed / done * (self.total - epoch) if done > 0 else 0.0
        valid = "-" if self.valid_bpb is None else f"{self.valid_bpb:.3f}"
        width = len(str(self.total))
        return (f"epoch {epoch:>{width}}/{self.total} | train {train_bpb:.3f} bpb | valid {valid} bpb | "
                f"{speed} | {format_duration(elapsed)} elapsed, ETA {format_duration(eta)}")

    def update(self, epoch: int, train_bpb: float, valid_bpb: Optional[float] = None) -> None:
        """Show epoch ``epoch``'s numbers; ``valid_bpb`` is remembered until the next one comes."""
        if valid_bpb is not None:
            self.valid_bpb = valid_bpb
        text = self.line(epoch, train_bpb)
        if self.tty:
            pad = " " * max(0, len(self._live) - len(text))  # blank out the rest of a longer old line
            self.stream.write("\r" + text + pad)
            self._live = text
        elif epoch == self.start_epoch + 1 or epoch % self.every == 0 or epoch == self.total:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A permanent line; on a terminal the live line is cleared, then redrawn below it."""
        if self.tty and self._live:
            self.stream.write("\r" + " " * len(self._live) + "\r" + text + "\n" + self._live)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the live line so whatever is printed next starts on a fresh line."""
        if self.tty and self._live:
            self.stream.write("\n")
            self.stream.flush()
        self._live = ""
