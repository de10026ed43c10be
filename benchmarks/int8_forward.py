"""Int8 EGG population forward vs a float32 forward with the same matmul shapes.

    python benchmarks/int8_forward.py [--hidden 256] [--layers 2] [--pop 256] [--steps 16] [--profile]

Both sides run T steps of a perturbed population forward (member p has its own rank-1
perturbation of every matrix) and score each next byte:

- int8: ``npegg.models.egg.generate`` with ``QEggRoll`` and the default 2²⁵-entry int8 noise
  table (slices cached after the first step, as in training);
- float32: the same architecture written directly in float32 (mean-|x| norm, the gated cell,
  MLP, head, log-softmax), with precomputed float32 rank-1 factors, x Wᵀ + ((x B) · s) Aᵀ.

Throughput is members × steps / second. Timing interleaves the two (``timing.compare``).
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import compare  # noqa: E402

from npegg import keys as K  # noqa: E402
from npegg.models.common import simple_es_tree_key  # noqa: E402
from npegg.models.egg import EGG, generate  # noqa: E402
from npegg.noiser.qeggroll import QEggRoll  # noqa: E402


def int8_setup(h, n_layer, pop, steps, vocab=256):
    _, params, scan_map, _ = EGG.rand_init(K.fold_in(K.key(0), 0), h, n_layer, vocab)
    keys = simple_es_tree_key(params, K.fold_in(K.key(0), 1), scan_map)
    frozen, nparams = QEggRoll.init_noiser(params, 4)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, vocab, (pop, steps + 1)).astype(np.uint8)
    state = np.zeros((pop, n_layer, h), np.int8)
    members = np.arange(pop)

    def run():
        return generate(QEggRoll, frozen, nparams, None, params, keys, (1, members), tokens[:, :-1],
                        tokens[:, 1:], state)
    return run


def float32_setup(h, n_layer, pop, steps, vocab=256):
    """The same shapes in float32: one rank-1 (A, B) per member and matrix, drawn once."""
    rng = np.random.default_rng(0)
    f32 = np.float32

    def mat(o, i):
        w = (rng.standard_normal((o, i)) / np.sqrt(i)).astype(f32)
        return w, rng.standard_normal((pop, o)).astype(f32), rng.standard_normal((pop, i)).astype(f32)
    emb = rng.standard_normal((vocab, h)).astype(f32)
    layers = [{n: mat(h, h) for n in ("Wf", "Uf", "Wh", "Uh")} | {"m0": mat(4 * h, h), "m1": mat(h, 4 * h)}
              for _ in range(n_layer)]
    head = mat(vocab, h)
    scale = (np.where(np.arange(pop) % 2 == 0, 1, -1) * 0.01).astype(f32)[:, None]
    tokens = rng.integers(1, vocab, (pop, steps + 1))

    def mm(m, x):
        w, a, b = m
        return x @ w.T + ((x * b).sum(-1, keepdims=True) * scale) * a       # x Wᵀ + s (x·b) aᵀ

    def norm(x):
        return x / (np.abs(x).mean(-1, keepdims=True) + f32(1e-5))

    def run():
        state = np.zeros((pop, n_layer, h), f32)
        total = np.zeros(pop, f32)
        for t in range(steps):
            x = emb[tokens[:, t]]
            for l, p in enumerate(layers):
                s = state[:, l]
                a = norm(x)
                f = 1 / (1 + np.exp(-(mm(p["Wf"], a) + mm(p["Uf"], s))))
                c = np.tanh(mm(p["Wh"], a) + mm(p["Uh"], f * s))
                s = s + f * (c - s)
                state[:, l] = s
                x = x + s
                x = x + mm(p["m1"], mm(p["m0"], norm(x)))
            logits = mm(head, norm(x))
            m = logits.max(-1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(logits - m).sum(-1))
            total += logits[np.arange(pop), tokens[:, t + 1]] - lse
        return total
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--pop", type=int, default=256)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile the int8 forward")
    a = ap.parse_args(argv)
    run_int8 = int8_setup(a.hidden, a.layers, a.pop, a.steps)
    run_f32 = float32_setup(a.hidden, a.layers, a.pop, a.steps)
    c = compare(run_int8, run_f32, repeats=a.repeats, min_sample=0.5)
    n = a.pop * a.steps
    print(f"H={a.hidden} L={a.layers} P={a.pop} T={a.steps}")
    print(f"int8    : {n / c.median_a:10.0f} member-tokens/s  ({c.median_a * 1e3:.1f} ms per {a.steps} steps)")
    print(f"float32 : {n / c.median_b:10.0f} member-tokens/s  ({c.median_b * 1e3:.1f} ms)")
    print(f"int8 / float32 time: {c.ratio:.2f}  (paired range {c.spread[0]:.2f}–{c.spread[1]:.2f})")
    if a.profile:
        prof = cProfile.Profile()
        prof.runcall(run_int8)
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    main()
