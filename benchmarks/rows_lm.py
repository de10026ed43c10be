"""Language-model rows: one LM step perturbed ÷ plain, the minGRU's forward ÷ its step loop, and
the peak memory of the default ``npegg train``.

The LM rows give every perturbed call a *new epoch* instead of switching the noise cache off:
a training step draws fresh noise once and the egg cell's recurrent matrices are read at every
time step of the chunk, which is what the cache is for. So each timed call builds every
member's noise exactly once, as a real generation does.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .report import Row, skipped
from .rows_float import noise_table
from .timing import compare

GIB = 1 << 30


def _lm():
    """The LM modules, or None while they do not exist yet."""
    try:
        from npegg.models import lm
        return lm
    except ImportError:
        return None


def make_lm(hidden, layers, pop, cell, rank=1, seed=0):
    """(es, state) for a float ByteLM with the default (caching) noise table."""
    from npegg.es import ES
    from npegg.noiser import EggRoll
    lm = _lm()
    return ES.create(lm.ByteLM, dict(hidden_dim=hidden, n_layers=layers, cell=cell), pop_size=pop,
                     sigma=0.05, lr=1e-3, noiser=EggRoll, seed=seed, rank=rank, solver="adam",
                     noise=noise_table(cache=True))


def byte_windows(pop, tokens, seed=0):
    """(inputs (P, T), targets (P, T)) uint8 from random bytes with a few document starts (byte 0)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(1, 256, size=(pop, tokens + 1), dtype=np.uint8)
    w[rng.random(w.shape) < 0.01] = 0
    return w[:, :-1], w[:, 1:]


def fresh_epochs(state):
    """A callable giving the ES state at epoch 1, 2, 3, …: new noise on every call."""
    from dataclasses import replace
    counter = itertools.count(1)
    return lambda: replace(state, epoch=next(counter))


def lm_rows(s):
    """One LM step (forward of T tokens for P members, log-likelihood of the next bytes)."""
    if _lm() is None:
        for cell in ("egg", "mingru"):
            yield skipped(f"lm/{cell}/D{s.lm_hidden}", "language model", "perturbed LM forward",
                          "plain LM forward", "npegg.models.lm not found", ("<=", 1.25))
        return
    tokens, targets = byte_windows(s.lm_pop, s.lm_tokens)
    for cell in ("egg", "mingru"):
        es, state = make_lm(s.lm_hidden, s.lm_layers, s.lm_pop, cell)
        h0 = es.model.init_state(es.frozen_params, s.lm_pop)
        next_state = fresh_epochs(state)
        c = compare(lambda: es.forward(next_state(), tokens, h0, targets=targets),
                    lambda: es.evaluate(state, tokens, h0, targets=targets),
                    repeats=s.lm_repeats, min_sample=s.min_sample, budget=s.row_budget)
        yield Row(f"lm/{cell}/D{s.lm_hidden}", "language model", "perturbed LM forward, new noise",
                  "plain LM forward, same bytes", c.ratio, ("<=", 1.25),
                  {"dtype": "float32", "cell": cell, "P": s.lm_pop, "T": s.lm_tokens,
                   "D": s.lm_hidden, "L": s.lm_layers, "rank": 1},
                  c.as_dict(), note="both sides compute log p(next byte) for all P·T positions")


def scan_rows(s):
    """The minGRU over T steps: the Hillis–Steele scan ÷ the loop it runs instead, and the cell's forward
    (batched projections + that loop) ÷ T calls of its one-step form."""
    try:
        from npegg.models.mingru import MinGRUCell, linear_scan, linear_scan_loop
    except ImportError:
        yield skipped(f"scan/mingru/T{s.scan_tokens}", "minGRU scan", "parallel scan", "step loop",
                      "npegg.models.mingru not found")
        return
    from npegg import keys as K
    from npegg.models.common import CommonParams, simple_es_tree_key
    from npegg.noiser import EggRoll
    P, T, D = s.scan_pop, s.scan_tokens, s.scan_hidden
    init = MinGRUCell.rand_init(K.key(0), D)
    es_keys = simple_es_tree_key(init.params, K.key(1), init.scan_map)
    frozen_n, noiser_p = EggRoll.init_noiser(init.params, 0.05, 1e-3, rank=1, noise=noise_table(cache=True))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((P, T, D), dtype=np.float32)
    h0 = np.zeros((P, D), np.float32)
    a = rng.uniform(0.0, 1.0, (P, T, D)).astype(np.float32)      # the scan alone, on its own inputs
    c = compare(lambda: linear_scan(a, x, h0), lambda: linear_scan_loop(a, x, h0), repeats=s.lm_repeats,
                min_sample=s.min_sample, budget=s.row_budget)
    yield Row(f"scan/linear_scan/T{T}", "minGRU scan", "linear_scan (Hillis–Steele)", "linear_scan_loop",
              c.ratio, None, {"dtype": "float32", "P": P, "T": T, "D": D}, c.as_dict(),
              note="h_t = a_t h_{t-1} + b_t only: log2(T) passes over (P, T, D) against T passes over (P, D)")
    for mode, iterinfo in (("plain", None), ("perturbed", (0, np.arange(P)))):
        cp = CommonParams(EggRoll, frozen_n, noiser_p, init.frozen_params, init.params, es_keys, iterinfo)

        def forward():
            return MinGRUCell._forward(cp, x, h0)[0]

        def loop():
            h = h0
            for t in range(T):
                h = MinGRUCell.step(cp, x[:, t], h)
            return h
        np.testing.assert_allclose(forward()[:, -1], loop(), rtol=1e-4, atol=1e-5)
        c = compare(forward, loop, repeats=s.lm_repeats, min_sample=s.min_sample, budget=s.row_budget)
        yield Row(f"scan/mingru/{mode}/T{T}", "minGRU scan", "batched projections + loop over T", "T one-step calls",
                  c.ratio, None,
                  {"dtype": "float32", "P": P, "T": T, "D": D, "mode": mode},
                  c.as_dict(), note="perturbed: noise cache on, as in training (built once, reused)")


# Runs the command and prints the peak RSS of its process tree's largest member. A small Python
# process forks it, so the fork's pre-exec RSS is the probe's (~10 MB), not the benchmark's.
_PROBE = """
import resource, subprocess, sys
with open(sys.argv[1], "wb") as log:
    rc = subprocess.call(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(peak * (1 if sys.platform == "darwin" else 1024), rc)   # bytes (Linux reports KiB)
"""


def peak_rss_of(cmd, timeout) -> tuple:
    """(peak resident set in bytes, wall seconds, exit code, output) of ``cmd`` in a subprocess.

    The peak is ``ru_maxrss`` of the command's process, read by a small probe process (``_PROBE``)
    rather than by this one: a child forked from a large benchmark process would start with the
    benchmark's pages counted in its peak.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log")
        probe = subprocess.run([sys.executable, "-c", _PROBE, log, *cmd], capture_output=True, text=True,
                               timeout=timeout)
        out = open(log, errors="replace").read() if os.path.exists(log) else ""
    if probe.returncode != 0:
        raise RuntimeError(f"peak-RSS probe failed: {probe.stderr[-2000:]}")
    peak, rc = (int(v) for v in probe.stdout.split())
    return peak, time.perf_counter() - t0, rc, out


def train_rows(s):
    """Peak memory of the default ``npegg train`` (± the settings' extra flags) ÷ 1 GiB."""
    try:
        import npegg.program.cli  # noqa: F401
    except ImportError:
        yield skipped("train/peak_rss", "npegg train", "peak RSS of npegg train", "1 GiB",
                      "npegg.program.cli not found", ("<=", 1.0))
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "npegg", "train", "--out", os.path.join(tmp, "run"), *s.train_args]
        rss, wall, rc, out = peak_rss_of(cmd, s.train_timeout)
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {rc}:\n{out[-2000:]}")
    yield Row("train/peak_rss", "npegg train", "peak RSS of npegg train", "1 GiB", rss / GIB, ("<=", 1.0),
              {"command": " ".join(["npegg", "train", "--out", "<tmp>", *s.train_args]), "peak_MiB": round(rss / 2**20)},
              {"peak_rss_mib": rss / (1 << 20), "wall_s": wall},
              note="ru_maxrss of the npegg train process (forked by a small probe process)")
