"""How good is one ES gradient estimate? Its cosine with backprop's gradient, on a trained LM.

    python -m benchmarks.es_gradient_quality RUN            # RUN: an `npegg train` run folder (float, ES)
    python -m benchmarks.es_gradient_quality RUN --reps 8   # average over 8 epochs' noise and bytes

For the checkpoint's parameters θ, with the bytes the run's reader serves (S = P/g windows of T
bytes per epoch, one per group of g members), it compares

    G_ES  = EggRoll's estimate from one epoch: −(1/√P) Σₙ fₙ · (member n's perturbation), fₙ the
            z-scored log-likelihood of its window (zero start state, so both sides see the same bytes)
    G_bp  = backprop's gradient of the mean loss over 16 epochs' windows (npegg.backprop), the
            "true" direction to the precision that matters here

and prints cos(G_ES, G_bp), the mean over ``--reps`` epochs ± its standard error, for: the
population (P and 4P), σ (÷10, ×1, ×3), the fitness shaping, one noise reused over k epochs
(what ``noise_reuse`` does), and per embedding leaf with and without ``rows_seen``. A first line
gives cos(backprop on one epoch's windows, G_bp): how much of one epoch's gradient is noise of the
bytes themselves.

Why the cosine is what it is: member n's fitness difference measures εₙ·∇F_k, the gradient of
its own window's T bytes; that gradient is mostly the noise of those few bytes, so the estimate's
noise ∝ E|∇F_k|²/P is ~S times larger than if every member saw the whole batch. The cosine grows
as √P (and as √T), which is what more member-bytes per second buy.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import numpy as np


def _vec(tree: dict, leaves=None) -> np.ndarray:
    from npegg.tree import flatten
    f = flatten(tree)
    return np.concatenate([np.asarray(f[k], np.float64).ravel() for k in sorted(f) if leaves is None or k in leaves])


def _cos(a, b) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def measure(run_dir: str, reps: int = 4, small: bool = False) -> list[tuple[str, float, float]]:
    """[(what, mean cos, standard error)] for the run's final checkpoint (module docstring)."""
    from npegg import fitness as F
    from npegg.backprop.lm import loss_and_grad
    from npegg.models.lm import ByteLM
    from npegg.program.commands import _restored, read_corpus
    from npegg.program.data import BatchReader
    from npegg.program.runs import make_run
    from npegg.tree import flatten

    run0, cfg, _ = _restored(run_dir)
    if cfg.mode != "float" or cfg.method != "es":
        raise SystemExit(f"{run_dir}: a float ES run is needed (this one is --mode {cfg.mode} --method {cfg.method})")
    corpus = read_corpus(cfg)
    params = run0.state.params
    P, g, T = cfg.pop_size, cfg.group_size, cfg.tokens_per_update
    S = P // g
    reader = BatchReader(corpus.train, S, 1, T)
    st, wins = reader.init(), []
    for _ in range(max(16, reps)):
        w, st = reader.next(st)
        wins.append(w)                                                         # (S, T+1) each
    fp = run0.es.frozen_params

    def bp(w):
        z = ByteLM.init_state(fp, w.shape[0])
        return loss_and_grad(fp, params, w[:, :-1], w[:, 1:], z)[1]
    bps = [bp(w) for w in wins[:16]]
    big = {k: sum(flatten(b)[k] for b in bps) / len(bps) for k in flatten(bps[0])}
    g_big = np.concatenate([np.ravel(big[k]).astype(np.float64) for k in sorted(big)])
    out = [("backprop on one epoch's windows", *_mean([_cos(_vec(b), g_big) for b in bps[:reps]]))]

    def estimate(pop, sigma, epoch, w, shaping="zscore", rows=False):
        r = make_run(replace(cfg, pop_size=pop), None)
        state = replace(r.state, params=params, epoch=epoch,
                        noiser_params={**r.state.noiser_params, "sigma": sigma})
        win = np.repeat(w, pop // S, axis=0)
        ll, _ = r.es.forward(state, win[:, :-1], ByteLM.init_state(fp, pop), targets=win[:, 1:])
        raw = ll.sum(axis=1, dtype=np.float64)
        fit = F.shape_fitness(raw, shaping, pop // S) if shaping != "group-z" else _group_z(raw, pop // S)
        seen = ByteLM.rows_seen(params, win[:, :-1]) if rows else None
        G = r.es.noiser.estimate_grads(r.es.frozen_noiser_params, state.noiser_params, params, r.es.es_tree_key,
                                       fit, (np.full(pop, epoch), r.es.members), r.es.es_map, seen)
        return flatten(G)

    def row(what, **kw):
        out.append((what, *_mean([_cos(_vec(estimate(**{"pop": P, "sigma": cfg.sigma, "epoch": e, "w": wins[e],
                                                             **kw})), g_big) for e in range(reps)])))
    row(f"ES, P = {P}, σ = {cfg.sigma}")
    if not small:
        row(f"ES, P = {4 * P}", pop=4 * P)
        for s in (cfg.sigma / 10, 3 * cfg.sigma):
            row(f"ES, σ = {s:g}", sigma=s)
        for shaping in ("group-z", "centered_ranks", "pair_sign"):
            row(f"ES, fitness {shaping}", shaping=shaping)
    same = [_vec(estimate(pop=P, sigma=cfg.sigma, epoch=0, w=wins[k])) for k in range(reps)]
    for k in sorted({1, 2, reps} if small else {1, 2, 4, reps}):
        out.append((f"ES, one noise over {k} epochs' bytes (noise_reuse), summed", _cos(sum(same[:k]), g_big), 0.0))
    emb = [k for k in ("emb", "direct") if k in params]
    for rows in (False, True):
        per = {k: [] for k in emb}
        for e in range(reps):
            G = estimate(pop=P, sigma=cfg.sigma, epoch=e, w=wins[e], rows=rows)
            for k in emb:
                per[k].append(_cos(G[k], big[k]))
        for k in emb:
            out.append((f"leaf {k}, {'rows_seen' if rows else 'every row'}", *_mean(per[k])))
    return out


def _group_z(raw, g):
    r = raw.reshape(-1, g)
    return ((r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + 1e-8)).ravel()


def _mean(values) -> tuple[float, float]:
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std() / np.sqrt(len(v))) if len(v) > 1 else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.es_gradient_quality", description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="an `npegg train` run folder or checkpoint (float mode, ES)")
    ap.add_argument("--reps", type=int, default=4, help="epochs' noise and bytes to average over [4]")
    ap.add_argument("--small", action="store_true", help="only the first rows (the test suite's setting)")
    args = ap.parse_args(argv)
    if args.reps < 2:
        ap.error("--reps must be >= 2")
    from npegg.program.blas import default_blas_threads
    default_blas_threads()
    print(f"| estimate | cos with backprop's gradient (16 epochs' bytes) | ± |\n|---|---:|---:|")
    for what, c, se in measure(args.run, args.reps, args.small):
        print(f"| {what} | {c:.4f} | {se:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
