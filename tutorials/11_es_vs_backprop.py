# %% [markdown]
# # Chapter 11 — ES against backprop
#
# Ten chapters trained models with evolution strategies alone. The question every ES user asks
# first is the obvious one: *what does this cost against ordinary backpropagation?* This
# chapter trains the same byte-level language model both ways and answers it with numbers.
#
# **What you will learn.**
#
# 1. **Backprop through time (BPTT) for the minGRU**, derived one step at a time, written from
#    scratch, and checked against central finite differences; then npegg's whole-model backprop
#    (`npegg.backprop`, gradients written by hand, no autograd) checked the same way.
# 2. **The same model, the same bytes, both ways**: ES against backprop at *equal data* (the same
#    bytes read) and at *equal wall time* on this machine.
# 3. **Why ES needs so many more forward passes**: the cosine between an ES estimate and the true
#    gradient, measured against the law $\big(1 + (d+1)/N\big)^{-1/2}$ of chapter 1.
# 4. **What ES buys in exchange**: no activations kept (memory measured against $T$), training
#    with no gradient at all (integers, non-differentiable scores), and seeds-and-scalars
#    communication (chapter 10).
#
# **Run it**: `python tutorials/11_es_vs_backprop.py` (or open it as a notebook).
# `NPEGG_TUTORIAL_SMALL=1` runs a tiny model in seconds; the full setting trains a larger one for a
# few minutes.

# %%
import time
import tracemalloc
from dataclasses import replace

import numpy as np

import _book as book
from npegg import keys as K
from npegg.backprop import loss, loss_and_grad
from npegg.backprop.cells import mingru_bwd, mingru_fwd
from npegg.models.lm import ByteLM
from npegg.program.runs.backprop_run import data_bytes_per_epoch, member_bytes_per_epoch
from npegg.program.data import load_corpus
from npegg.program.config import TrainConfig
from npegg.program.runs import make_run
from npegg.tree import flatten, unflatten

SMALL = book.choose_setting(None)  # None: NPEGG_TUTORIAL_SMALL decides; True = small (seconds), False = full
FIGURES = ["11_gradient_check.png", "11_training.png", "11_cosine.png", "11_memory.png"]
plt = book.pyplot()
rng = np.random.default_rng(11)

# %% [markdown]
# ## 1. Backprop through a minGRU, one step at a time
#
# The minGRU of chapter 6, for one step $t$ (everything elementwise in the $D$ channels except the
# two matmuls; $\sigma$ here is the logistic function — in this chapter only, the noise scale is
# written $\sigma_\varepsilon$):
#
# $$ u_t = W_z x_t + b_z,\quad z_t = \mathrm{sigmoid}(u_t),\quad \tilde h_t = W_h x_t + b_h,\quad
#    h_t = (1 - z_t)\odot h_{t-1} + z_t \odot \tilde h_t . $$
#
# A loss $\ell$ reads every $h_t$. Call $g_t = \partial\ell/\partial h_t$ the **total** gradient of
# $h_t$: it reaches $h_t$ directly (from the loss at step $t$, written $\bar y_t$) and through
# $h_{t+1}$, which contains $(1 - z_{t+1})\odot h_t$. So
#
# $$ g_t = \bar y_t + (1 - z_{t+1}) \odot g_{t+1}, \qquad g_T = \bar y_T , $$
#
# the same linear recurrence as the forward pass, run **backwards in time**. Given $g_t$, the
# chain rule through one step gives the rest:
#
# $$ \frac{\partial\ell}{\partial z_t} = g_t \odot (\tilde h_t - h_{t-1}),\qquad
#    \bar u_t = \frac{\partial\ell}{\partial z_t} \odot z_t (1 - z_t),\qquad
#    \bar{\tilde h}_t = g_t \odot z_t , $$
#
# $$ \frac{\partial\ell}{\partial W_z} = \sum_t \bar u_t\, x_t^\top,\quad
#    \frac{\partial\ell}{\partial b_z} = \sum_t \bar u_t,\quad
#    \frac{\partial\ell}{\partial W_h} = \sum_t \bar{\tilde h}_t\, x_t^\top,\quad
#    \frac{\partial\ell}{\partial b_h} = \sum_t \bar{\tilde h}_t,\quad
#    \frac{\partial\ell}{\partial x_t} = W_z^\top \bar u_t + W_h^\top \bar{\tilde h}_t . $$
#
# Look at what the backward pass reads: $x_t$, $z_t$, $\tilde h_t$ and $h_{t-1}$ **for every
# step**. They were computed in the forward pass and must be kept until the backward pass
# reaches step $t$: memory $O(T\cdot D)$ per sequence. Remember this; section 5 measures it.
#
# The slow version first: a loop forward that keeps the four arrays, a loop backward.

# %%
def sigmoid(u):
    return 1.0 / (1.0 + np.exp(-u))


def mingru_forward_keep(p, x, h0):
    """x (B, T, D), h0 (B, D) → h (B, T, D) and what the backward needs (kept for every step)."""
    B, T, D = x.shape
    h, keep = np.empty((B, T, D)), []
    prev = h0
    for t in range(T):
        z = sigmoid(x[:, t] @ p["Wz"].T + p["bz"])                    # (B, D)
        h_tilde = x[:, t] @ p["Wh"].T + p["bh"]                         # (B, D)
        h[:, t] = (1 - z) * prev + z * h_tilde
        keep.append((x[:, t], z, h_tilde, prev))                        # 4 arrays (B, D) per step
        prev = h[:, t]
    return h, keep


def mingru_backward(p, dh, keep):
    """dh (B, T, D) = ∂ℓ/∂h_t from the loss at each step → (dx (B, T, D), grads like p)."""
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.empty_like(dh)
    g_next, z_next = np.zeros_like(dh[:, 0]), np.zeros_like(dh[:, 0])   # g_{t+1}, z_{t+1} (0 past the end)
    for t in reversed(range(dh.shape[1])):
        x_t, z, h_tilde, prev = keep[t]
        g = dh[:, t] + (1 - z_next) * g_next                            # total ∂ℓ/∂h_t   (B, D)
        du = g * (h_tilde - prev) * z * (1 - z)                         # (B, D)
        dht = g * z                                                     # (B, D)
        grads["Wz"] += du.T @ x_t
        grads["bz"] += du.sum(0)
        grads["Wh"] += dht.T @ x_t
        grads["bh"] += dht.sum(0)
        dx[:, t] = du @ p["Wz"] + dht @ p["Wh"]
        g_next, z_next = g, z
    return dx, grads


# %% [markdown]
# **Checking it.** A gradient is checked against *central finite differences*: for each parameter
# entry $\theta_i$, $\big(\ell(\theta + h e_i) - \ell(\theta - h e_i)\big)/2h$ differs from
# $\partial\ell/\partial\theta_i$ by $O(h^2)$ (the Taylor terms of even order cancel), plus the
# rounding of $\ell$ divided by $h$. In float64 with $h = 10^{-6}$ both are far below $10^{-7}$.
# The loss is a random linear read-out of every state, $\ell = \sum_{t} w_t\cdot h_t$, so $\bar y_t = w_t$.
# Every entry of every parameter, and of the input $x$, is checked.

# %%
B, T, D = 2, 7, 5
p = {"Wz": rng.standard_normal((D, D)) / np.sqrt(D), "bz": rng.standard_normal(D) * 0.5,
     "Wh": rng.standard_normal((D, D)) / np.sqrt(D), "bh": rng.standard_normal(D) * 0.5}    # float64
x = rng.standard_normal((B, T, D))
h0 = rng.standard_normal((B, D))
w = rng.standard_normal((B, T, D))                                      # ℓ = Σ w ⊙ h


def readout_loss(p, x):
    return float(np.sum(w * mingru_forward_keep(p, x, h0)[0]))


h_out, kept = mingru_forward_keep(p, x, h0)
dx, grads = mingru_backward(p, w, kept)


def central_fd(f, arr, h=1e-6):
    """∂f/∂arr by central differences, every entry (arr is perturbed in place and restored)."""
    out = np.empty_like(arr)
    for i in np.ndindex(arr.shape):
        old = arr[i]
        arr[i] = old + h
        up = f()
        arr[i] = old - h
        down = f()
        arr[i] = old
        out[i] = (up - down) / (2 * h)
    return out


worst_rel = 0.0
for name in p:
    fd = central_fd(lambda: readout_loss(p, x), p[name])
    rel = np.abs(fd - grads[name]).max() / np.abs(fd).max()
    worst_rel = max(worst_rel, rel)
    print(f"∂ℓ/∂{name:2s}: max |backprop − FD| / max |FD| = {rel:.1e}")
fd_x = central_fd(lambda: readout_loss(p, x), x)
rel_x = np.abs(fd_x - dx).max() / np.abs(fd_x).max()
print(f"∂ℓ/∂x : max |backprop − FD| / max |FD| = {rel_x:.1e}")
book.check("minGRU BPTT vs central differences, worst relative error (below 1e-7)", max(worst_rel, rel_x), 0, 1e-7)

# %% [markdown]
# npegg's version (`npegg.backprop.cells.mingru_bwd`) does the backward recurrence without a loop
# over time: $g_t = \bar y_t + a_{t+1} g_{t+1}$ is chapter 6's linear scan on the time-reversed
# arrays. Same gradients?

# %%
h_lib, cache = mingru_fwd(p, x, h0)
dx_lib, grads_lib = mingru_bwd(p, w, cache)
lib_diff = max(np.abs(grads_lib[k] - grads[k]).max() for k in p)
print(f"npegg's mingru_fwd/bwd vs the loops: |h| diff {np.abs(h_lib - h_out).max():.1e}, "
      f"|grad| diff {lib_diff:.1e}, |dx| diff {np.abs(dx_lib - dx).max():.1e}")
book.check("npegg mingru_bwd vs the from-scratch loop (float64, max abs difference)", lib_diff, 0, 1e-12)

# %% [markdown]
# ### The whole model
#
# `npegg.backprop.loss_and_grad` is the same work for all of ByteLM (chapter 6): embedding, per
# layer LayerNorm → cell → residual → LayerNorm → MLP → residual, a final LayerNorm, the head and
# the mean negative log-likelihood (nats per byte). Each atom's backward is a few lines in
# `npegg/backprop/layers.py`, written out in its docstring. We check it the same way, in float64,
# on a random sample of entries of every parameter leaf, on real bytes.

# %%
corpus = load_corpus(None, max_docs=book.setting(30, 200))
print(corpus.description)
init = ByteLM.rand_init(K.key(0), hidden_dim=8, n_layers=2, cell="mingru", dtype="float64")
frozen, params = init.frozen_params, init.params
tok = corpus.train[:4 * 33].reshape(4, 33).astype(np.int64)                  # 4 streams of 32 bytes + targets
state0 = ByteLM.init_state(frozen, 4, dtype="float64")                       # (B, L, D)
value, grads_lm, _ = loss_and_grad(frozen, params, tok[:, :-1], tok[:, 1:], state0)

flat_p, flat_g = flatten(params), flatten(grads_lm)
rel_errors, fd_vals, bp_vals = {}, [], []
for path, leaf in flat_p.items():
    picks = [tuple(rng.integers(0, n) for n in leaf.shape) for _ in range(4)]
    errs = []
    for i in picks:
        old = leaf[i]
        leaf[i] = old + 1e-5
        up = loss(frozen, params, tok[:, :-1], tok[:, 1:], state0)
        leaf[i] = old - 1e-5
        down = loss(frozen, params, tok[:, :-1], tok[:, 1:], state0)
        leaf[i] = old
        fd = (up - down) / 2e-5
        fd_vals.append(fd)
        bp_vals.append(flat_g[path][i])
        errs.append(abs(fd - flat_g[path][i]))
    rel_errors[path] = max(errs) / max(np.abs(flat_g[path]).max(), 1e-12)
n_params_small = sum(v.size for v in flat_p.values())
print(f"ByteLM D=8, L=2 ({n_params_small:,} parameters), loss {value:.4f} nats/byte; "
      f"{len(fd_vals)} entries over {len(flat_p)} leaves checked")
for path, e in sorted(rel_errors.items(), key=lambda kv: -kv[1])[:4]:
    print(f"  worst leaves: {path:28s} max |backprop − FD| / max |grad| = {e:.1e}")
book.check("whole ByteLM backprop vs central differences, worst relative error (below 1e-6)",
           max(rel_errors.values()), 0, 1e-6)

if plt:
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.scatter(fd_vals, bp_vals, s=10)
    lim = max(np.abs(fd_vals).max(), 1e-9) * 1.1
    ax.plot([-lim, lim], [-lim, lim], "k:", lw=0.8)
    ax.set(xlabel="central finite difference", ylabel="backprop (by hand)",
           title=f"ByteLM gradient, {len(fd_vals)} entries")
    book.save(fig, "11_gradient_check.png")

# %% [markdown]
# ## 2. One model, the same bytes, two ways to train it
#
# `npegg train --method backprop` (`npegg.program.runs.backprop_run.BackpropRun`) is ES's twin in all
# but the gradient: same model and initial parameters, same Adam and learning-rate schedule,
# same bytes. ES with population $P$ in groups of $g$ reads $S = P/g$ streams of $T$ bytes per epoch
# (all $g$ members of a group read the group's window); a backprop step reads those same $S$
# windows as one batch. So **equal epochs is equal data**. Per epoch ES pushes $P\cdot T$
# member-bytes through the model (forward only), backprop $S\cdot T$ (forward and backward).
#
# Three runs: ES for $E$ epochs; backprop for the same $E$ epochs (equal data); and backprop for
# as many epochs as fit in ES's wall time (equal time). Backprop uses Adam with learning rate
# 0.01 (the rate `benchmarks/lm_study.py` gives its backprop rows) and the same cosine schedule;
# ES uses 0.03. Neither is tuned for these small models.

# %%
small_cfg = dict(hidden_dim=16, n_layers=1, pop_size=128, group_size=8, tokens_per_update=32, epochs=40)
full_cfg = dict(hidden_dim=32, n_layers=1, pop_size=256, group_size=8, tokens_per_update=64, epochs=200)
base = replace(TrainConfig(), **book.setting(small_cfg, full_cfg), max_docs=book.setting(30, 200),
               eval_lanes=book.setting(16, 64), eval_warmup=book.setting(16, 64), sample_bytes=0,
               mlp_ratio=4, direct_path=False, embedding_update="all", lr=0.03)   # the ByteLM with its MLP


def train_run(cfg):
    """Train cfg to its last epoch; → (final validation bpb, wall seconds of the epochs, run)."""
    cfg = cfg.resolved()
    cfg.validate()
    run = make_run(cfg, corpus)
    t0 = time.perf_counter()
    curve = []
    for _ in range(cfg.epochs):
        curve.append(run.epoch_step())
    seconds = time.perf_counter() - t0
    return run.valid_bpb(), seconds, curve


bpb0 = make_run(base.resolved(), corpus).valid_bpb()
es_bpb, es_s, es_curve = train_run(base)
bp_bpb, bp_s, bp_curve = train_run(replace(base, method="backprop", lr=0.01))
bp_epochs_equal_time = max(base.epochs, int(base.epochs * es_s / bp_s))
bpt_bpb, bpt_s, bpt_curve = train_run(replace(base, method="backprop", lr=0.01, epochs=bp_epochs_equal_time))

rows = [("ES (EggRoll)", base.epochs, es_s, es_bpb, base),
        ("backprop, equal data", base.epochs, bp_s, bp_bpb, replace(base, method="backprop")),
        ("backprop, equal time", bp_epochs_equal_time, bpt_s, bpt_bpb, replace(base, method="backprop"))]
print(f"model D={base.hidden_dim}, L={base.n_layers}; P={base.pop_size}, g={base.group_size} "
      f"(S={base.pop_size // base.group_size} streams), T={base.tokens_per_update}; "
      f"validation bpb at the start {bpb0:.3f}")
print(f"{'run':22s} {'epochs':>7s} {'data bytes':>11s} {'member-bytes':>13s} {'wall s':>7s} {'valid bpb':>10s}")
for name, epochs, seconds, bpb, cfg in rows:
    print(f"{name:22s} {epochs:7d} {data_bytes_per_epoch(cfg) * epochs:11,d} "
          f"{member_bytes_per_epoch(cfg) * epochs:13,d} {seconds:7.1f} {bpb:10.3f}")
time_ratio = es_s / bp_s
print(f"an ES epoch costs {time_ratio:.1f}× a backprop epoch here (same data; ES pushes g = {base.group_size}× the "
      f"member-bytes, forward only; backprop's backward costs about 2 forwards)")
book.check("backprop beats ES at equal data on this model (bpb gap, positive)", es_bpb - bp_bpb,
           book.setting(2.0, 1.25), book.setting(1.9, 0.3))       # one seeded run; tol: other machines' BLAS
book.check("backprop at equal time is at least as good (bpb gain over equal data, not negative)", bp_bpb - bpt_bpb,
           0.5, 0.5)

if plt:
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(1, len(es_curve) + 1), es_curve, label="ES (population's train bpb)")
    ax.plot(np.arange(1, len(bp_curve) + 1), bp_curve, label="backprop (batch train bpb)", alpha=0.8)
    ax.axvline(base.epochs, color="gray", lw=0.8, ls=":")
    ax.plot(np.arange(1, len(bpt_curve) + 1), bpt_curve, label="backprop, equal time", alpha=0.5)
    ax.set(xlabel="epoch (S·T bytes of data each)", ylabel="train bits per byte", xscale="log",
           title="The same ByteLM and bytes: ES vs backprop")
    ax.legend(fontsize=8)
    book.save(fig, "11_training.png")

# %% [markdown]
# Read the table. **At equal data backprop is far ahead**: every byte it reads moves every
# parameter along the exact gradient of that byte's loss. **At equal time** the gap grows, since a
# backprop epoch is cheaper than an ES epoch (the ratio printed above, which depends on the
# machine and its load). On a CPU, at this size, backprop
# wins on both counts, clearly.
#
# The paper puts the same question at a larger scale (Sarkar et al., *Evolution Strategies at the
# Hyperscale*, [arXiv:2511.16652v2](https://arxiv.org/abs/2511.16652v2), section 6.1 "Pure Integer
# Language Model Pretraining" and figure 2b; these figures are in v2 only, see
# [the references](references.md)): its int8 EGG language model (6 layers, width 256) trained by
# EGGROLL on MiniPile reaches a best test loss of **3.40** bits per byte against **3.58** for an
# fp32 Transformer of the same size trained by backprop with the same data batch (16 sequences a
# step) — ES ahead, with populations up to $2^{20}$ — and its largest population costs about
# **180×** backprop's GPU-hours. Those are the paper's numbers, not this chapter's: what we can
# reproduce on a laptop is the cost side, and the next section explains where it comes from.
#
# ## 3. Where the cost comes from: one estimate's variance
#
# Backprop returns the gradient $\nabla F$ exactly, for the cost of a few forward passes (measured
# below: the backward pass reads the kept activations and does about twice the forward's matmuls). ES
# (chapter 1) estimates it from $N$ antithetic pairs,
# $\hat g = \frac{1}{2\sigma_\varepsilon N}\sum_k \big(F(\theta+\sigma_\varepsilon\varepsilon_k) -
# F(\theta-\sigma_\varepsilon\varepsilon_k)\big)\varepsilon_k$, and for small $\sigma_\varepsilon$ its error
# obeys $\mathbb{E}\lVert\hat g - \nabla F\rVert^2 = \frac{d+1}{N}\lVert\nabla F\rVert^2$, so
#
# $$ \cos(\hat g, \nabla F) \approx \Big(1 + \frac{d+1}{N}\Big)^{-1/2} . $$
#
# With backprop we finally have the *true* gradient of a real model to measure this against.
# The model is the tiny ByteLM above ($d$ parameters), $F$ the log-likelihood of a fixed batch,
# full-rank Gaussian noise, $\sigma_\varepsilon = 10^{-4}$ in float64.

# %%
def median_seconds(fn, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


bp_probe = make_run(base.resolved(), None)                    # the model of section 2, float32
tok_probe = corpus.train[:16 * 65].reshape(16, 65).astype(np.int64)
state_probe = ByteLM.init_state(bp_probe.es.frozen_params, 16)
args_probe = (bp_probe.es.frozen_params, bp_probe.state.params, tok_probe[:, :-1], tok_probe[:, 1:], state_probe)
t_fwd_only = median_seconds(lambda: loss(*args_probe))
t_fwd_bwd = median_seconds(lambda: loss_and_grad(*args_probe))
print(f"one gradient by backprop costs {t_fwd_bwd / t_fwd_only:.1f} forward passes here "
      f"({t_fwd_bwd * 1e3:.1f} ms against {t_fwd_only * 1e3:.1f} ms, 16 streams of 64 bytes)")
# (a timing: printed, never checked; speed belongs to benchmarks, and this machine is shared)

leaves = list(flat_p)
sizes = [flat_p[k].size for k in leaves]
theta0 = np.concatenate([flat_p[k].ravel() for k in leaves])                  # (d,)
true_g = -np.concatenate([flat_g[k].ravel() for k in leaves])                 # ∇F, F = −ℓ   (d,)
d = theta0.size
d_default = sum(v.size for v in flatten(make_run(TrainConfig().resolved(), None).state.params).values())
print(f"tiny model d = {d:,}; npegg train's default model d = {d_default:,}")
book.check("default model parameters (units of 1e5)", d_default / 1e5, 0.86, 0.05)


def F_of(theta):
    """F(θ) = −ℓ(θ), θ a flat (d,) vector."""
    parts = np.split(theta, np.cumsum(sizes)[:-1])
    tree = unflatten({k: v.reshape(flat_p[k].shape) for k, v in zip(leaves, parts)})
    return -loss(frozen, tree, tok[:, :-1], tok[:, 1:], state0)


sig = 1e-4
Ns = book.setting([16, 64, 256], [16, 64, 256, 1024, 4096])
noise_rng = np.random.default_rng(3)
eps_all = noise_rng.standard_normal((max(Ns), d))                             # (N, d)
diffs = np.array([F_of(theta0 + sig * e) - F_of(theta0 - sig * e) for e in eps_all])  # (N,)
cos_measured, cos_law = [], []
for N in Ns:
    g_hat = (diffs[:N] @ eps_all[:N]) / (2 * sig * N)                         # (d,)
    cos_measured.append(float(g_hat @ true_g / np.linalg.norm(g_hat) / np.linalg.norm(true_g)))
    cos_law.append(float((1 + (d + 1) / N) ** -0.5))
    print(f"N = {N:5d} pairs: cos(ES estimate, ∇F) = {cos_measured[-1]:.3f}   law (1 + (d+1)/N)^-½ = {cos_law[-1]:.3f}")
# one draw per N (each cosine's spread is about (1 − cos²)/√(2d)·…; 0.05 is several of them here)
book.check("pairs for cosine 0.9, in units of d+1: 0.81/0.19", 0.9**2 / (1 - 0.9**2), 4.3, 0.05)
book.check("largest gap between the measured cosine and the law", max(abs(a - b) for a, b in zip(cos_measured, cos_law)),
           0, 0.05)

if plt:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    grid_N = np.logspace(0.8, np.log10(max(Ns) * 4), 100)
    ax.semilogx(grid_N, (1 + (d + 1) / grid_N) ** -0.5, "k-", lw=1, label="(1 + (d+1)/N)^-½")
    ax.semilogx(Ns, cos_measured, "o", label="measured on ByteLM (true gradient by backprop)")
    ax.axvline(d + 1, color="gray", ls=":", lw=0.8)
    ax.text(d + 1, 0.05, " N = d+1", fontsize=8, color="gray")
    ax.set(xlabel="antithetic pairs N", ylabel="cosine to the true gradient", ylim=(0, 1),
           title=f"ES estimate vs backprop's gradient, d = {d:,}")
    ax.legend(fontsize=8)
    book.save(fig, "11_cosine.png")

# %% [markdown]
# The measured cosines follow the law (within 0.05 at every $N$, checked above). To point as well as backprop's gradient does — cosine
# 0.9, say — ES needs $N = (d+1)\cdot 0.9^2/(1 - 0.9^2) \approx 4.3\,(d+1)$ pairs, that is
# $\approx 8.5\,d$ forward passes, for **one** gradient that backprop gets for the few measured above.
# Gradient descent makes progress in proportion to $\cos^2$ (the part of the step along the
# gradient), so the forward passes per unit of progress are $2N/\cos^2 = 2(N + d + 1)$: at least
# $2(d+1)$, whatever $N$. For the default `npegg train` model ($d$ ≈ 0.9·10⁵, printed above) that
# is a factor of order $10^5$ in the worst case.
#
# Reality is kinder than this isotropic arithmetic, which is why ES trains at all (chapter 1
# explains why training works when $d \gg N$): the loss curves in only a few directions, a small
# cosine still makes progress when the steps are many, fitness shaping and low-rank noise
# (chapter 3) cut the cost of each member, and backprop's own minibatch gradient is noisy too.
# The paper's measured price on a real task is ~180× backprop's GPU-hours (its largest population,
# v2 section 6.1). But the direction of the
# arithmetic is right: **ES pays for not computing a gradient with many more forward passes.**
#
# ## 4. What ES buys
#
# ### No activations kept
#
# Section 1 showed that BPTT must keep $x_t, z_t, \tilde h_t, h_{t-1}$ for every step of every
# sequence until the backward pass: for the whole model, every layer's inputs, norms, gates, MLP
# hidden units and the $(B, T, 256)$ softmax. ES only ever runs forward: a member's fitness is a
# running sum, and its state is $L$ vectors of $D$ numbers, whatever $T$ is. Memory:
#
# $$ \text{BPTT: } O(B \cdot T \cdot D \cdot L), \qquad \text{ES: } O(P \cdot D \cdot L)\ \text{(plus the weights, in both)} . $$
#
# Measured with `tracemalloc` (NumPy reports its allocations to it): the peak memory of one
# backprop step on $B$ streams of $T$ bytes, and of ES's evaluation of $P = B$ members on the same
# bytes, read in time chunks of 8 bytes with the state carried between chunks.

# %%
mem_cfg = replace(base, hidden_dim=32, n_layers=2, pop_size=book.setting(32, 64), group_size=2)
mem_run = make_run(mem_cfg.resolved(), corpus)
es, es_state = mem_run.es, mem_run.state
frozen32 = es.frozen_params
members = book.setting(32, 64)
Ts = book.setting([32, 64, 128], [32, 64, 128, 256])


def peak_bytes(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def es_eval(tokens):
    """ES's forward for P members over T bytes, 8 bytes at a time: only the state is carried."""
    hidden = ByteLM.init_state(frozen32, members)                             # (P, L, D)
    total = np.zeros(members)
    for t0 in range(0, tokens.shape[1] - 1, 8):
        ll, hidden = es.forward(es_state, tokens[:, t0:t0 + 8], hidden, targets=tokens[:, t0 + 1:t0 + 9])
        total += ll.sum(1)
    return total


mem_bp, mem_es = [], []
for T_mem in Ts:
    toks = corpus.train[:members * (T_mem + 1)].reshape(members, T_mem + 1).astype(np.int64)
    state_bp = ByteLM.init_state(frozen32, members)
    mem_bp.append(peak_bytes(lambda: loss_and_grad(frozen32, es_state.params, toks[:, :-1], toks[:, 1:], state_bp)))
    es_eval(toks)                                   # once first: the noise slices it builds are cached for reuse
    mem_es.append(peak_bytes(lambda: es_eval(toks)))
    print(f"T = {T_mem:5d}: backprop step peak {mem_bp[-1] / 2**20:7.1f} MiB   ES evaluation peak {mem_es[-1] / 2**20:6.2f} MiB")
slope_bp = np.polyfit(Ts, mem_bp, 1)[0] / members                                 # bytes per stream-byte
slope_es = np.polyfit(Ts, mem_es, 1)[0] / members
print(f"growth with T: backprop {slope_bp / 1024:.1f} KiB per stream per byte; ES {slope_es:.1f} bytes "
      f"(its state: L·D·4 = {mem_cfg.n_layers * mem_cfg.hidden_dim * 4} bytes per member, for any T)")
book.check("backprop keeps more than 4 KiB of activations per stream-byte at D=32, L=2 (KiB)", slope_bp / 1024, 10, 6)
book.check(f"backprop peak grows like T: peak ratio T={Ts[-1]} over T={Ts[0]}, over {Ts[-1] // Ts[0]}",
           mem_bp[-1] / mem_bp[0] / (Ts[-1] / Ts[0]), 1, 0.25)
book.check(f"ES peak flat in T: peak ratio T={Ts[-1]} over T={Ts[0]}", mem_es[-1] / mem_es[0], 1, 0.25)

if plt:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(Ts, np.array(mem_bp) / 2**20, "o-", label=f"backprop step, B = {members} streams")
    ax.plot(Ts, np.array(mem_es) / 2**20, "s-", label=f"ES evaluation, P = {members} members")
    ax.set(xlabel="bytes per stream T", ylabel="peak memory allocated (MiB)",
           title=f"Memory vs sequence length, ByteLM D={mem_cfg.hidden_dim}, L={mem_cfg.n_layers}")
    ax.legend(fontsize=8)
    book.save(fig, "11_memory.png")

# %% [markdown]
# Backprop's memory grows linearly with the sequence length, by the slope printed above per
# stream and byte (the logits, their softmax and its gradient are $(B, T, 256)$ float32 arrays,
# 1 KiB per stream-byte each). ES's stays flat: it could read a book-length context per member in the memory of one
# chunk. At hyperscale this is what lets a device hold a *population* instead of one batch's
# activations.
#
# ### Training with no gradient at all
#
# Chapters 7 and 8 trained a model whose weights, activations and log-likelihood are all int8 and
# int32: every operation rounds, so the loss is a step function of the weights and its gradient
# is zero almost everywhere — backprop has nothing to work with; ES only needs the scores. The
# same holds for any score that is not differentiable: an accuracy, a BLEU score, a reward from a
# simulator, a pass/fail test. (Exercise 3 measures it for the top-1 accuracy of this chapter's model.)
#
# ### Seeds and scalars
#
# Chapter 10: data-parallel backprop exchanges a gradient of $d$ floats per step between workers;
# ES exchanges the $P$ fitness scores, because each worker rebuilds every member's noise from
# (seed, leaf, epoch, member). Counted as chapter 10 counts them, per worker, with $W$ workers: a
# ring all-reduce of the float32 gradient sends $2\frac{W-1}{W}\cdot 4d \approx 8d$ bytes per step;
# ES sends its $P/W$ float64 scores up and receives all $P$ back, $8P/W + 8P$ bytes per epoch.
# For the model of section 2 and $W = 8$:

# %%
d_model = sum(v.size for v in flatten(make_run(base.resolved(), None).state.params).values())
W_wire = 8
bp_wire = 2 * (W_wire - 1) / W_wire * 4 * d_model                # ring all-reduce, float32 gradient
es_wire = 8 * base.pop_size / W_wire + 8 * base.pop_size         # float64 scores up, all of them down
print(f"ByteLM D={base.hidden_dim}, L={base.n_layers}: {d_model:,} parameters; per worker, W = {W_wire}: backprop "
      f"{bp_wire:,.0f} bytes per step, ES {es_wire:,.0f} bytes per epoch ({base.pop_size} scores), "
      f"ratio {bp_wire / es_wire:.1f}")
book.check("ES bytes per worker per epoch over 8P (chapter 10's count, W = 8)", es_wire / (8 * base.pop_size), 1.125, 1e-12)

# %% [markdown]
# ## Summary
#
# | | backprop (BPTT) | ES (EGGROLL) |
# |---|---|---|
# | gradient | exact, a few forward passes (measured in section 3) | estimated; cosine $\approx(1 + (d+1)/N)^{-1/2}$ from $2N$ forward passes |
# | progress per byte of data | high (section 2) | low at laptop populations; the paper's populations of up to $2^{20}$ reach 3.40 vs 3.58 bpb (v2, section 6.1) |
# | memory | $O(B\,T\,D\,L)$ activations | $O(P\,D\,L)$ states, flat in $T$ |
# | needs | a differentiable model and loss | scores only: integer models, any objective |
# | between machines | $d$ floats per step | $P$ scores per epoch |
#
# ES is not a cheaper way to compute a gradient; it is a way to train **without** one, that
# trades compute (which hyperscale hardware has) for memory, communication and freedom in what is
# optimised.
#
# ## Exercises
#
# Solutions, checked by the test suite: [solutions](solutions/11_es_vs_backprop.py).
#
# 1. **Backprop through one step of nano-egg's cell.** For the egg cell
#    $f = \mathrm{sigmoid}(W_f x + U_f s + b_f)$, $c = \tanh(W_h x + U_h(f\odot s) + b_h)$,
#    $s' = s + f\odot(c - s)$, derive $\partial\ell/\partial s$, $\partial\ell/\partial U_f$ and
#    $\partial\ell/\partial U_h$ for one step given $\partial\ell/\partial s'$, write them in NumPy,
#    and check them against central differences and against `npegg.backprop.cells.egg_bwd` with $T = 1$.
# 2. **How many pairs for cosine 0.9?** From the law, compute the $N$ that gives
#    $\cos = 0.9$ for $d = 200$, and measure the cosine at that $N$ on a linear function
#    $F(\theta) = g\cdot\theta$ over 20 seeds. (There the relative-error law is exact in expectation
#    and the cosine law is its first-order consequence, accurate at this $N$; chapter 1, section 5.)
# 3. **A score with no gradient.** The top-1 accuracy of the tiny ByteLM (the fraction of bytes
#    whose most likely next byte is right) is piecewise constant in the weights. Show that its
#    central-difference gradient is zero at almost every entry, while an ES estimate with
#    $\sigma_\varepsilon = 0.05$ is not, and that stepping along the ES estimate raises the accuracy.
# 4. **Memory crossover.** For section 4's model ($D = 32$, $L = 2$, an MLP 4D per layer), $P = 1024$
#    members in groups of $g = 8$, and ES reading chunks of $c = 8$ bytes: at what sequence length
#    $T$ does one backprop step on $S = P/g$ streams keep more activation memory than ES's
#    evaluation of all $P$ members — their carried states ($P\cdot L\cdot D\cdot 4$ bytes) **plus**
#    the activations of the chunk being read ($P\cdot c$ member-bytes at a forward's footprint per
#    byte)? Measure both per-byte footprints to answer, and compare with the answer you get if you
#    forget ES's chunk.
#
# **Back to** the [table of contents](README.md).

# %%
book.finish(FIGURES)
