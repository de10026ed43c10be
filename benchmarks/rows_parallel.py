"""Workers rows: ``npegg train``'s epoch on 1 and on 2 workers (local processes, Ray actors), the
bytes that cross per epoch, and a table on paper of the epoch time for 1 … 1024 workers.

Both sides of a speed-up row run the same epochs (``ParallelRun.epoch_step`` at the ``npegg
train`` defaults on random bytes): A = k epochs in one process, B = k epochs over 2 workers,
timed alternately, so A ÷ B is the speed-up. The figure uses CPU time of the critical path (the
coordinator's process CPU time plus that of the busiest worker, which reports its own with every
reply), which is what the wall clock would show on idle cores and stays meaningful on a shared
machine; the wall-clock ratio beside it is the speed-up actually seen under the load of the
moment. Both assume the workers get whole cores: where two vCPUs are one core's hyperthreads,
the wall clock on an idle machine is lower.

The paper table models one epoch on W workers at population P from what was measured here::

    t(W, P) = c · P / W            the forward: c = seconds per member per epoch (1 worker)
            + u · P / P₀           the update, which every replica applies whole (u measured at P₀)
            + 2 ℓ + (8 P W + 8 P + 100 W) / β       the raw scores: P float64 down to each of the W
                                                    workers, P/W up from each, plus a digest each

with a star network of latency ℓ and bandwidth β at the coordinator (values in the output). It
says where communication starts to dominate the forward (cells marked *) and where the
replicated update does (†): the update caps the speed-up at about c / (u / P₀) workers whatever
the network, so beyond that the next step is a partial update per worker (a reduce of |θ|).
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

from .report import Row, skipped

LATENCY_S = 1e-4            # ℓ: one message across a data-centre network
BANDWIDTH_BPS = 1.25e9      # β: 10 Gbit/s at the coordinator
WORKERS_TARGET = (">=", 1.8)  # 2 workers ÷ 1 at the npegg train defaults (issue 21; was 1.7 on the earlier model)


def _parallel_run(cfg, data, workers, engine):
    from npegg.program.data import BatchReader
    from npegg.program.runs import make_run
    from npegg.program.shard import ParallelRun
    run = make_run(cfg, None)
    run.reader = BatchReader(data, cfg.pop_size, cfg.group_size, cfg.tokens_per_update)
    p = ParallelRun(run, data, workers, engine, say=lambda text: None)
    p.start()
    p.epoch_step()                                  # warm-up: noise table, caches, first messages
    return p


def _critical_cpu(p, before):
    """CPU seconds on the epoch's critical path since ``before``: the coordinator's own, plus the
    busiest worker's (each worker reports its process CPU time with every forward)."""
    eng = p.pop.engine
    workers = max(c - b for c, b in zip(eng.cpu_seconds, before)) if eng.remote else 0.0
    return workers


def _interleaved(a, b, epochs, repeats):
    """Seconds per epoch of a and of b, alternating which goes first: (wall a, wall b, cpu a, cpu b).

    CPU time of a side = the coordinator's process CPU time + the busiest worker's (the critical
    path on idle cores, counting the coordinator's overlapping update as if it were serial)."""
    wa, wb, ca, cb = [], [], [], []
    for k in range(repeats):
        for f, wall, cpu in ((a, wa, ca), (b, wb, cb)) if k % 2 == 0 else ((b, wb, cb), (a, wa, ca)):
            before = list(f.pop.engine.cpu_seconds)
            t, c = time.perf_counter(), time.process_time()
            for _ in range(epochs):
                f.epoch_step()
            wall.append((time.perf_counter() - t) / epochs)
            cpu.append((time.process_time() - c + _critical_cpu(f, before)) / epochs)
    return wa, wb, ca, cb


def _timing(wa, wb, ca, cb):
    return {"clock": "cpu", "median_a_s": statistics.median(ca), "median_b_s": statistics.median(cb),
            "times_a_s": ca, "times_b_s": cb, "wall_times_a_s": wa, "wall_times_b_s": wb, "repeats": len(ca),
            "cpu_ratio": statistics.median(ca) / statistics.median(cb),
            "wall_ratio": statistics.median(wa) / statistics.median(wb)}


def _config(s):
    from npegg.program.config import TrainConfig
    return TrainConfig(**dict(s.workers_train)).resolved()


def _data(n=3_000_000, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 256, n, dtype=np.uint8)
    data[rng.random(n) < 0.001] = 0                 # document starts
    return data


def rows(s):
    cfg, data = _config(s), _data(s.workers_data_bytes)
    inputs = {"P": cfg.pop_size, "g": cfg.group_size, "D": cfg.hidden_dim, "L": cfg.n_layers,
              "T": cfg.tokens_per_update, "cell": cfg.cell, "epochs_per_sample": s.workers_epochs,
              "load_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    one = _parallel_run(cfg, data, 1, "local")
    measured = {}
    try:
        for engine in ("local", "ray"):
            key = f"workers/{engine}/2"
            if engine == "ray" and s.workers_skip_ray:
                yield skipped(key, "workers", "1 worker", f"2 {engine} workers", "--quick: starting Ray takes "
                              "~10 s; the full run measures it", WORKERS_TARGET)
                continue
            if engine == "ray":
                try:
                    import ray  # noqa: F401
                except ImportError:
                    yield skipped(key, "workers", "1 worker", "2 Ray actors", "ray is not installed "
                                  "(pip install 'npegg[ray]')", WORKERS_TARGET)
                    continue
            two = _parallel_run(cfg, data, 2, engine)
            try:
                eng = two.pop.engine
                down0, up0 = list(eng.bytes_down), list(eng.bytes_up)
                wa, wb, ta, tb = _interleaved(one, two, s.workers_epochs, s.workers_repeats)
                n = s.workers_epochs * s.workers_repeats
                per_worker = [((eng.bytes_down[w] - down0[w]) + (eng.bytes_up[w] - up0[w])) / n for w in range(2)]
            finally:
                two.close()
            measured[engine] = (ta, tb, per_worker)
            yield Row(key, "workers", "one epoch, 1 worker (this process)", f"one epoch, 2 {engine} workers",
                      statistics.median(ta) / statistics.median(tb), WORKERS_TARGET, {**inputs, "engine": engine},
                      _timing(wa, wb, ta, tb),
                      note="the speed-up on idle cores, from CPU times of the critical path; the wall-clock "
                           "ratio beside it needs two idle cores (load_1m is the load at the start)")
        if "local" in measured:
            ta, tb, per_worker = measured["local"]
            param_bytes = sum(np.asarray(v).nbytes for v in _leaves(one.run.state.params))
            crossing = float(np.mean(per_worker))
            yield Row("workers/bytes/2", "workers", "bytes crossing per epoch per worker (local, 2 workers)",
                      "bytes of the parameters (what broadcasting them would send)", crossing / param_bytes, None,
                      {**inputs, "bytes_per_epoch_per_worker": round(crossing), "param_bytes": param_bytes},
                      {"bytes_per_epoch_per_worker": per_worker},
                      note="P raw scores down (float64), P/W up, a digest; the parameters never cross after the start")
            u = _update_seconds(one, s.workers_repeats)
            c = max(statistics.median(ta) - u, 1e-9) / cfg.pop_size
            print(paper_table(c, u, cfg.pop_size), flush=True)
    finally:
        one.close()


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


def _update_seconds(p, repeats):
    """Median seconds of one update (``ES.step``) of the master replica's ES at its population."""
    es, state = p.run.es, p.run.state
    raw = np.random.default_rng(0).standard_normal(es.pop_size)
    times = []
    for _ in range(max(3, repeats)):
        t = time.perf_counter()
        es.step(state, raw)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def epoch_seconds(c, u, p0, workers, pop, latency=LATENCY_S, bandwidth=BANDWIDTH_BPS):
    """(total, forward, update, communication) seconds of one epoch on paper (module docstring)."""
    forward = c * pop / workers
    update = u * pop / p0
    comm = 2 * latency + (8 * pop * workers + 8 * pop + 100 * workers) / bandwidth
    return forward + update + comm, forward, update, comm


def paper_table(c, u, p0, pops=(2 ** 10, 2 ** 14, 2 ** 17, 2 ** 20), chunk=64) -> str:
    """The markdown table of ``epoch_seconds`` for W = 1, 2, 4, … 1024 (module docstring)."""
    head = "| workers | " + " | ".join(f"P = 2^{int(np.log2(p))}" for p in pops) + " |"
    lines = [f"On paper, seconds per epoch: forward {c * 1e3:.3f} ms per member and update {u * 1e3:.1f} ms at "
             f"P = {p0} (measured here), latency {LATENCY_S * 1e6:.0f} µs, bandwidth {BANDWIDTH_BPS * 8 / 1e9:.0f} "
             f"Gbit/s at the coordinator. * communication > forward; † update > forward; - fewer chunks of "
             f"{chunk} members than workers.", "", head, "|" + "---|" * (len(pops) + 1)]
    for k in range(11):
        w = 2 ** k
        cells = []
        for p in pops:
            if w > p // chunk:
                cells.append("-")
                continue
            total, fwd, upd, comm = epoch_seconds(c, u, p0, w, p)
            cells.append(f"{total:.3g}{'*' if comm > fwd else ''}{'†' if upd > fwd else ''}")
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
