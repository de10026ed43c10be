"""Solutions to the exercises of chapter 11 (run by tests/test_tutorials.py; each one checks itself)."""
import tracemalloc
from dataclasses import replace

import numpy as np

from npegg import keys as K
from npegg.backprop import loss_and_grad
from npegg.backprop.cells import egg_bwd, egg_fwd
from npegg.backprop.lm import forward_cache
from npegg.models.lm import ByteLM
from npegg.program.config import TrainConfig
from npegg.program.data import load_corpus
from npegg.program.runs import make_run
from npegg.tree import flatten, unflatten


def sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def exercise_1(B=3, D=4, seed=0):
    """One step of the egg cell, backwards, given ds' = ∂ℓ/∂s':

        f = σ(W_f x + U_f s + b_f),  c = tanh(W_h x + U_h (f⊙s) + b_h),  s' = (1 − f)⊙s + f⊙c
        dc = ds'⊙f,  dv_c = dc⊙(1 − c²)                      (v_c the argument of tanh)
        d(f⊙s) = dv_c U_h,  df = ds'⊙(c − s) + d(f⊙s)⊙s,  dv_f = df⊙f(1 − f)
        ds = ds'⊙(1 − f) + d(f⊙s)⊙f + dv_f U_f
        dU_h = dv_cᵀ (f⊙s),  dU_f = dv_fᵀ s
    """
    rng = np.random.default_rng(seed)
    p = {k: rng.standard_normal((D, D)) / np.sqrt(D) for k in ("Wf", "Uf", "Wh", "Uh")}
    p.update(bf=rng.standard_normal(D) * 0.3, bh=rng.standard_normal(D) * 0.3)
    x, s = rng.standard_normal((B, D)), rng.standard_normal((B, D))
    w = rng.standard_normal((B, D))                                          # ℓ = Σ w ⊙ s', so ds' = w

    def step(p, s):
        f = sigmoid(x @ p["Wf"].T + s @ p["Uf"].T + p["bf"])
        c = np.tanh(x @ p["Wh"].T + (f * s) @ p["Uh"].T + p["bh"])
        return f, c, (1 - f) * s + f * c

    f, c, _ = step(p, s)
    dc = w * f
    dvc = dc * (1 - c * c)
    dfs = dvc @ p["Uh"]
    df = w * (c - s) + dfs * s
    dvf = df * f * (1 - f)
    ds = w * (1 - f) + dfs * f + dvf @ p["Uf"]
    dUh, dUf = dvc.T @ (f * s), dvf.T @ s

    def loss(p, s):
        return float(np.sum(w * step(p, s)[2]))

    def fd(arr, fn, h=1e-6):
        out = np.empty_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            up = fn()
            arr[i] = old - h
            down = fn()
            arr[i] = old
            out[i] = (up - down) / (2 * h)
        return out

    errs = [np.abs(fd(s, lambda: loss(p, s)) - ds).max(), np.abs(fd(p["Uf"], lambda: loss(p, s)) - dUf).max(),
            np.abs(fd(p["Uh"], lambda: loss(p, s)) - dUh).max()]
    _, cache = egg_fwd(p, x[:, None], s)                                    # npegg, T = 1
    _, grads = egg_bwd(p, w[:, None], cache)
    lib = max(np.abs(grads["Uf"] - dUf).max(), np.abs(grads["Uh"] - dUh).max())
    print(f"exercise 1: by hand vs central differences, max error {max(errs):.1e}; vs npegg egg_bwd {lib:.1e}")
    assert max(errs) < 1e-8 and lib < 1e-12
    return max(errs)


def exercise_2(d=200, seeds=20):
    """cos = (1 + (d+1)/N)^-½ = 0.9  ⇒  N = (d+1)·0.81/0.19 ≈ 857 for d = 200.

    On a linear F(θ) = g·θ the antithetic estimate is exactly (1/N) Σ ε_k (ε_k·g). Over 20 seeds the
    mean cosine is within 0.01 of 0.9: its spread per seed is ≈ 0.01 at this N (measured here too),
    so the mean's is ≈ 0.002, and the law itself is a first-order approximation (its bias is ~0.002).
    """
    N = round((d + 1) * 0.81 / 0.19)
    g = np.random.default_rng(100).standard_normal(d)
    cosines = []
    for seed in range(seeds):
        eps = np.random.default_rng(seed).standard_normal((N, d))               # (N, d)
        g_hat = eps.T @ (eps @ g) / N                                         # (d,)
        cosines.append(g_hat @ g / np.linalg.norm(g_hat) / np.linalg.norm(g))
    mean, spread = float(np.mean(cosines)), float(np.std(cosines))
    print(f"exercise 2: N = {N} pairs for d = {d}; measured cosine {mean:.4f} ± {spread:.4f} (per seed)")
    assert N == 857 and abs(mean - 0.9) < 0.01
    return N, mean


def exercise_3(pairs=48, epochs=15, sigma=0.05, lr=0.3):
    """Top-1 accuracy is piecewise constant: its central difference is 0 at almost every entry, but
    ES, which compares whole perturbed models, sees it change and can climb it."""
    corpus = load_corpus(None, max_docs=10)
    init = ByteLM.rand_init(K.key(1), hidden_dim=8, n_layers=1, cell="mingru", dtype="float64")
    frozen, params = init.frozen_params, init.params
    tok = corpus.train[:8 * 33].reshape(8, 33).astype(np.int64)
    state0 = ByteLM.init_state(frozen, 8, dtype="float64")
    flat = flatten(params)
    keys, shapes = list(flat), [flat[k].shape for k in flat]
    sizes = [flat[k].size for k in flat]
    theta = np.concatenate([flat[k].ravel() for k in keys])                      # (d,)

    def accuracy(th):
        parts = np.split(th, np.cumsum(sizes)[:-1])
        tree = unflatten({k: v.reshape(s) for k, v, s in zip(keys, parts, shapes)})
        h, _, _ = forward_cache(frozen, tree, tok[:, :-1], state0)
        return float(np.mean(np.argmax(h @ tree["head"].T, axis=-1) == tok[:, 1:]))

    rng = np.random.default_rng(0)
    probe = rng.choice(theta.size, 200, replace=False)
    zero = 0
    for i in probe:
        e = np.zeros_like(theta)
        e[i] = 1e-6
        zero += accuracy(theta + e) == accuracy(theta - e)
    start = accuracy(theta)
    for epoch in range(epochs):
        eps = np.random.default_rng([7, epoch]).standard_normal((pairs, theta.size))
        diffs = np.array([accuracy(theta + sigma * e) - accuracy(theta - sigma * e) for e in eps])
        if epoch == 0:
            nonzero_pairs = int(np.sum(diffs != 0))
        g_hat = diffs @ eps / (2 * sigma * pairs)
        theta = theta + lr * sigma * g_hat / (np.linalg.norm(g_hat) / np.sqrt(theta.size) + 1e-12)
    end = accuracy(theta)
    print(f"exercise 3: central differences zero at {zero}/200 entries; {nonzero_pairs}/{pairs} ES pairs see the "
          f"accuracy change; ES on accuracy alone, {epochs} epochs: {start:.3f} → {end:.3f}")
    assert zero >= 198 and nonzero_pairs > pairs // 4 and end > start + 0.05
    return start, end


def exercise_4(P=1024, g=8, chunk=8, probe=64):
    """Backprop on S = P/g streams keeps s_bp bytes per stream-byte of activations. ES keeps, for all P
    members, their states (P·L·D·4 bytes) plus the activations of the chunk it is reading: s_es bytes per
    member-byte, c bytes per member. They cross at T = (P·L·D·4 + P·c·s_es) / (S·s_bp). Leaving out the
    chunk (the states alone) puts the crossover below one byte; with it, ES's chunk dominates its memory
    and the crossover is c·g·s_es/s_bp bytes plus a fraction of a byte."""
    corpus = load_corpus(None, max_docs=10)
    cfg = replace(TrainConfig(), hidden_dim=32, n_layers=2, mlp_ratio=4, direct_path=False, embedding_update="all",
                  pop_size=probe, group_size=2, tokens_per_update=chunk, sample_bytes=0).resolved()
    run = make_run(cfg, corpus)                                                 # the model of section 4
    es, state = run.es, run.state
    frozen, L, D = es.frozen_params, cfg.n_layers, cfg.hidden_dim

    def peak(fn):
        tracemalloc.start()
        tracemalloc.reset_peak()
        fn()
        out = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return out

    def rows(n, length):
        return corpus.train[:n * (length + 1)].reshape(n, length + 1).astype(np.int64)

    bp = []
    for T in (32, 96):                                                          # one backprop step, probe streams
        tok, h0 = rows(probe, T), ByteLM.init_state(frozen, probe)
        bp.append(peak(lambda: loss_and_grad(frozen, state.params, tok[:, :-1], tok[:, 1:], h0)))
    s_bp = (bp[1] - bp[0]) / (64 * probe)                                       # bytes per stream-byte
    es_peak = []
    for c in (8, 24):                                                           # one ES chunk, probe members
        tok, h0 = rows(probe, c), ByteLM.init_state(frozen, probe)
        es.forward(state, tok[:, :-1], h0, targets=tok[:, 1:])                  # once first: noise slices cached
        es_peak.append(peak(lambda: es.forward(state, tok[:, :-1], h0, targets=tok[:, 1:])))
    s_es = (es_peak[1] - es_peak[0]) / (16 * probe)                             # bytes per member-byte
    states, chunk_bytes, S = P * L * D * 4, P * chunk * s_es, P // g
    T_states_only = states / (S * s_bp)
    T_cross = (states + chunk_bytes) / (S * s_bp)
    print(f"exercise 4: backprop {s_bp / 1024:.1f} KiB per stream-byte, ES forward {s_es / 1024:.1f} KiB per "
          f"member-byte; ES keeps {states / 2**20:.2f} MiB of states + {chunk_bytes / 2**20:.1f} MiB for a chunk of "
          f"{chunk} bytes; crossover at T = {T_cross:.1f} bytes (states alone: {T_states_only:.2f})")
    assert s_bp > s_es > 0                                     # a forward keeps less per byte than forward + backward
    assert T_states_only < 1 < T_cross                         # the chunk is what ES's memory is made of
    assert abs(T_cross - (T_states_only + chunk * g * s_es / s_bp)) < 1e-9 * T_cross
    return T_cross


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
    exercise_4()
