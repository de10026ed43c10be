"""The progress line: in place on a terminal, plain lines elsewhere; the results table."""
from __future__ import annotations

import io

from npegg.program.progress import Progress, format_duration, format_rate, format_table


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_piped_output_prints_plain_lines_every_n_epochs():
    out, clock = io.StringIO(), Clock()
    p = Progress(20, bytes_per_epoch=1000, stream=out, every=5, clock=clock)
    for epoch in range(1, 21):
        clock.t += 2.0
        p.update(epoch, train_bpb=8.0 - epoch / 10, valid_bpb=7.5 if epoch == 10 else None)
    p.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split("|")[0].strip() for line in lines] == ["epoch  1/20", "epoch  5/20", "epoch 10/20",
                                                                "epoch 15/20", "epoch 20/20"]
    assert "valid - bpb" in lines[1] and "valid 7.500 bpb" in lines[3]     # last valid is remembered
    assert "500 B/s" in lines[-1] and "0:40 elapsed, ETA 0:00" in lines[-1]


def test_terminal_output_updates_one_line_in_place():
    out, clock = io.StringIO(), Clock()
    p = Progress(3, bytes_per_epoch=50_000, stream=out, tty=True, clock=clock)
    for epoch in (1, 2, 3):
        clock.t += 1.0
        p.update(epoch, train_bpb=7.0)
    p.message("saved checkpoint")
    p.close()
    text = out.getvalue()
    assert text.count("\r") >= 3 and text.endswith("\n") and "50.0 kB/s" in text
    assert text.count("\n") == 2                                  # the message, then the final newline
    assert "saved checkpoint\nepoch 3/3" in text                  # the live line is redrawn after it


def test_shorter_line_blanks_out_the_longer_one_before_it():
    out = io.StringIO()
    p = Progress(1000, 1, stream=out, tty=True, clock=Clock())
    p.update(1, train_bpb=7.0, valid_bpb=123456.789)
    p.valid_bpb = None
    p.update(2, train_bpb=7.0)
    first, second = out.getvalue().split("\r")[1:]
    assert len(second) == len(first)                              # padded with spaces


def test_formatters():
    assert format_duration(4.2) == "0:04" and format_duration(3725) == "1:02:05"
    assert format_rate(950) == "950 B/s" and format_rate(3.2e6) == "3.2 MB/s"
    table = format_table([("uniform, log2(256)", 8.0), ("npegg (egg, 50 epochs)", 4.12345), ("none", None)])
    lines = table.splitlines()
    assert lines[0].startswith("method") and lines[0].endswith("bpb")
    assert len({len(line) for line in lines}) == 1 and lines[3].endswith("4.123") and lines[4].endswith("-")
