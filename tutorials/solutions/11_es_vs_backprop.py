"""Solutions to the exercises of chapter 11 (run by tests/test_tutorials.py; each one checks itself)."""
import tracemalloc

import numpy as np

from npegg import keys as K
from npegg.backprop import loss_and_grad
from npegg.backprop.cells import egg_bwd, egg_fwd
from npegg.backprop.lm import forward_cache
from npegg.models.lm import ByteLM
from npegg.program.data import load_corpus
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


def exercise_4(D=64, L=2, P=1024, g=8, streams=8):
    """Backprop's activations grow by s bytes per stream-byte; ES keeps P·L·D·4 bytes of states.
    With S = P/g streams they cross at T = P·L·D·4 / (S·s): below one byte for the defaults, so one
    backprop step keeps more than all of ES's population states at any sequence length."""
    corpus = load_corpus(None, max_docs=10)
    init = ByteLM.rand_init(K.key(0), hidden_dim=D, n_layers=L, cell="mingru")
    peaks = []
    Ts = (32, 96)
    for T in Ts:
        tok = corpus.train[:streams * (T + 1)].reshape(streams, T + 1).astype(np.int64)
        state = ByteLM.init_state(init.frozen_params, streams)
        tracemalloc.start()
        loss_and_grad(init.frozen_params, init.params, tok[:, :-1], tok[:, 1:], state)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    slope = (peaks[1] - peaks[0]) / (Ts[1] - Ts[0]) / streams                    # bytes per stream-byte
    es_states = P * L * D * 4
    T_cross = es_states / (P // g * slope)
    print(f"exercise 4: backprop keeps {slope / 1024:.1f} KiB per stream-byte at D={D}, L={L}; ES's states "
          f"{es_states / 2**10:.0f} KiB; crossover at T = {T_cross:.2f} bytes")
    assert slope > 4096 and T_cross < 1
    return T_cross


if __name__ == "__main__":
    exercise_1()
    exercise_2()
    exercise_3()
    exercise_4()
