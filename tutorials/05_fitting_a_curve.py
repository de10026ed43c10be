# %% [markdown]
# # Chapter 5 — Fitting a curve, end to end
#
# Everything so far, put to work on the seed notebook's experiment ("The EGGROLL Recipe from
# Scratch", part 4): fit $y = x^2 + x + 1$ on $[-10, 10]$ with a small MLP, trained by EGGROLL
# alone — no backpropagation anywhere.
#
# **What you will learn.**
#
# 1. How the pieces of chapters 1–4 line up in one training loop (`npegg.es.ES`, with the loop
#    written out rather than hidden).
# 2. What each hyperparameter of the notebook does: population, groups, rank, σ, learning rate,
#    and their *schedules*.
# 3. What training looks like: the loss curve, and the fitted curve at snapshots along the way.
# 4. Whether the schedule matters: the notebook's linear decay against a cosine decay and against
#    a constant σ — and a control that separates the two things decaying σ changes (the blur, and
#    the step size).
#
# **Run it**: `python tutorials/05_fitting_a_curve.py` (or as a notebook). Figures go to
# `$NPEGG_TUTORIAL_OUT` (default `tutorials/figures/`); `NPEGG_TUTORIAL_SMALL=1` runs a small
# setting (fewer epochs and members). The full setting — the notebook's 1000 epochs × 4096
# members, five times — took **1 min 18 s** of wall time (56 s of CPU) on this machine (2 cores,
# BLAS on one thread, with a test suite running beside it).

# %%
import time

import numpy as np

import _book as book
from npegg.es import ES
from npegg.models import MLP
from npegg.noise import NoiseTable
from npegg.optim import constant_schedule, cosine_decay_schedule, linear_schedule
from npegg.tree import flatten

SMALL = book.choose_setting(None)  # None: NPEGG_TUTORIAL_SMALL decides; True = small (seconds), False = full
FIGURES = ["05_data_and_schedules.png", "05_loss.png", "05_fit_snapshots.png", "05_schedule_comparison.png"]
plt = book.pyplot()
EPOCHS = book.setting(80, 1000)
POP = book.setting(512, 4096)
GROUP = book.setting(32, 128)
print(f"setting: {EPOCHS} epochs, population {POP}, groups of {GROUP}")

# %% [markdown]
# ## 1. Data
#
# 1024 training and 1024 test points, uniform on $[-10, 10]$, from a local generator. The target
# is noiseless; the fitness of a prediction $\hat y$ is $-(\hat y - y)^2$ (higher is better), and
# we report the test **mean squared error** (lower is better).

# %%
data = np.random.default_rng(0)
train_x = data.uniform(-10, 10, 1024).astype(np.float32)    # (1024,)
test_x = data.uniform(-10, 10, 1024).astype(np.float32)


def target(x):
    return x**2 + x + 1


train_y, test_y = target(train_x), target(test_x)
grid = np.linspace(-10, 10, 401, dtype=np.float32)            # for drawing the fitted curve
print(f"target range on the test set: {test_y.min():.1f} .. {test_y.max():.1f}; "
      f"MSE of predicting the mean: {np.var(test_y):.1f}")

# %% [markdown]
# ## 2. Model, noiser and hyperparameters
#
# The notebook's choices, one by one:
#
# - **Model**: `MLP` 1 → 64 → 64 → 64 → 1 with the `pqn` activation, relu(layer_norm(h)), and biases.
#   Weights are `MM_PARAM` leaves (rank-1 noise), biases `PARAM` leaves (full-rank noise).
# - **Population** $P = 4096$ members, as 2048 antithetic pairs.
# - **Groups** of 128 members: each group is scored on *one* training point, so an epoch sees
#   $4096/128 = 32$ points, and successive epochs walk through the training set. (Chapter 2: the
#   grouped z-score gives the same update as the global one; what the groups really do is choose
#   which data each member sees.)
# - **Rank** $r = 1$ (chapter 3: the low-rank bias is small; the update is still full rank).
# - **σ** starts at 1 and **decays linearly to 0**; **SGD** with a learning rate that starts at 1 and
#   also decays linearly to 0. The optimizer receives $G = -\sigma^2\sqrt P\,\hat g$ (chapter 2). That
#   looks like a step that shrinks quadratically in σ — but with z-scored fitnesses $\hat g$ itself
#   grows like $1/\sigma$ (the $f_n$ have unit spread whatever σ is, and $\hat g = \frac{1}{P\sigma}\sum_n f_n\varepsilon_n$),
#   so $G = -\frac{\sigma}{\sqrt P}\sum_n f_n\varepsilon_n$ has a size proportional to σ, and the SGD step
#   $\mathrm{lr}\cdot G$ to $\mathrm{lr}\cdot\sigma$. Section 5 measures it.
#
# A schedule is a function of a step counter (`npegg.optim`: constant, linear, exponential,
# cosine). The optimizer calls the learning-rate schedule with its update count; `ES.step` sets
# σ for the next epoch from the σ schedule.

# %%
TABLE = NoiseTable(seed=0)           # the noise table (chapter 4), built once and shared by every run below


def make_es(sigma_schedule, lr_schedule, seed=1):
    return ES.create(MLP, dict(in_dim=1, out_dim=1, hidden_dims=[64] * 3, activation="pqn"),
                     pop_size=POP, group_size=GROUP, rank=1, seed=seed, noise=TABLE,
                     sigma=sigma_schedule, lr=lr_schedule)


sigma_sched = linear_schedule(1.0, 0.0, EPOCHS)
lr_sched = linear_schedule(1.0, 0.0, EPOCHS)
es, state = make_es(sigma_sched, lr_sched)
n_params = sum(p.size for p in flatten(state.params).values())
print(f"{n_params:,} parameters in {len(flatten(state.params))} leaves; noise numbers per member per epoch: "
      f"{sum((p.shape[0] + p.shape[1]) if p.ndim == 2 else p.size for p in flatten(state.params).values()):,}")
print("sigma at epochs 0, E/4, E/2, 3E/4:", [round(float(sigma_sched(e)), 3) for e in (0, EPOCHS // 4, EPOCHS // 2, 3 * EPOCHS // 4)])

# %%
def power_decay(power):
    """lr(e) = (1 − e/E)^power: linear^power, the control schedules of section 5."""
    return lambda e: max(0.0, 1 - e / EPOCHS) ** power


schedules = {"linear (notebook)": (linear_schedule(1.0, 0.0, EPOCHS), linear_schedule(1.0, 0.0, EPOCHS)),
             "cosine": (cosine_decay_schedule(1.0, EPOCHS), cosine_decay_schedule(1.0, EPOCHS)),
             "constant σ, linear lr": (constant_schedule(1.0), linear_schedule(1.0, 0.0, EPOCHS)),
             "constant σ, lr·σ as linear": (constant_schedule(1.0), power_decay(2)),
             "constant σ, lr·σ² as linear": (constant_schedule(1.0), power_decay(3))}
if plt:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.scatter(train_x, train_y, s=3, label="train")
    a1.scatter(test_x, test_y, s=3, label="test")
    a1.set(xlabel="x", ylabel="y", title="y = x² + x + 1")
    a1.legend()
    ep = np.arange(EPOCHS)
    for name, (s_fn, lr_fn) in schedules.items():
        line, = a2.plot(ep, [s_fn(e) for e in ep], label=f"σ, {name}")
        a2.plot(ep, [lr_fn(e) for e in ep], ls="--", color=line.get_color(), lw=1)
    a2.set(xlabel="epoch", ylabel="value", title="schedules: σ (solid), learning rate (dashed)")
    a2.legend(fontsize=8)
    book.save(fig, "05_data_and_schedules.png")

# %% [markdown]
# ## 3. The loop
#
# Each epoch is the four steps of the notebook's loop:
#
# 1. **data**: pick 32 training points and repeat each for the 128 members of its group;
# 2. **perturbed forward** (`es.forward`): every member runs the MLP with its own perturbation,
#    one shared matmul per layer plus a rank-1 term (chapter 3);
# 3. **fitness and update** (`es.step`): raw scores → z-scores → $G$ rebuilt from the same noise →
#    SGD → new parameters, and σ for the next epoch;
# 4. **evaluation** (`es.evaluate`): the unperturbed model on the test set.

# %%
def train(es, state, epochs, snapshots=(), log_every=100, verbose=True):
    """Train; returns the final state, test MSE per epoch, predictions on `grid` at the snapshot epochs,
    and the seconds spent in each phase."""
    groups = POP // GROUP
    losses, snaps = [], {}
    if 0 in snapshots:
        snaps[0] = es.evaluate(state, grid[:, None])[:, 0]
    seconds = {"forward": 0.0, "step": 0.0, "evaluate": 0.0}
    steps = []                                                                       # |Δθ| per epoch
    for epoch in range(epochs):
        t0 = time.perf_counter()
        idx = np.repeat((np.arange(groups) + epoch * groups) % train_x.size, GROUP)   # (P,) data index per member
        out = es.forward(state, train_x[idx, None])[:, 0]                            # (P,) perturbed predictions
        t1 = time.perf_counter()
        before = flatten(state.params)
        state = es.step(state, -(out - train_y[idx]) ** 2)                           # raw scores (P,)
        t2 = time.perf_counter()
        steps.append(np.sqrt(sum(np.sum((v - before[k]) ** 2) for k, v in flatten(state.params).items())))
        pred = es.evaluate(state, test_x[:, None])[:, 0]                             # (1024,) unperturbed
        losses.append(float(np.mean((pred - test_y) ** 2)))
        seconds["forward"] += t1 - t0
        seconds["step"] += t2 - t1
        seconds["evaluate"] += time.perf_counter() - t2
        if epoch + 1 in snapshots:
            snaps[epoch + 1] = es.evaluate(state, grid[:, None])[:, 0]
        if verbose and (epoch % log_every == 0 or epoch == epochs - 1):
            print(f"epoch {epoch:4d}  sigma {state.noiser_params['sigma']:.3f}  test MSE {losses[-1]:10.3f}")
    return state, np.array(losses), snaps, seconds, np.array(steps)


snap_epochs = sorted({0, EPOCHS // 100, EPOCHS // 20, EPOCHS // 4, EPOCHS // 2, EPOCHS})
mse0 = float(np.mean((es.evaluate(state, test_x[:, None])[:, 0] - test_y) ** 2))
print(f"test MSE before training: {mse0:.1f}")
t_start = time.perf_counter()
state, losses, snaps, seconds, steps = train(es, state, EPOCHS, snapshots=snap_epochs, log_every=max(1, EPOCHS // 10))
wall = time.perf_counter() - t_start
print(f"\nfinal test MSE {losses[-1]:.3f} (best {losses.min():.3f} at epoch {losses.argmin()}); "
      f"{1e3 * wall / EPOCHS:.1f} ms per epoch, {wall:.1f} s in all")
print("time per epoch: " + ", ".join(f"{k} {1e3 * v / EPOCHS:.1f} ms" for k, v in seconds.items()))

# %% [markdown]
# For comparison, the reference: the seed notebook ("The EGGROLL Recipe from Scratch", part 4,
# linked from the HyperscaleES project page <https://eshyperscale.github.io>) run unchanged with
# JAX on the CPU of the machine this book was written on ends at a test MSE of 2.36 with its
# `key = jax.random.key(1)`, and 3.00 with `key(2)`, at 40 ms per epoch after a 3.5 s compilation.
# Those are our measurements of the reference, not published numbers: to check them, run the
# notebook's part 4 and read `losses[-1]`. Our noise comes from a different generator (chapter 4),
# so the runs are not the same run, but the final error should be of the same size.
#
# ## 4. What training looks like

# %%
if plt:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.plot(losses)
    a1.set(xlabel="epoch", ylabel="test MSE", title="test loss")
    a2.semilogy(losses, lw=0.7, alpha=0.6, label="every epoch")
    win = max(3, EPOCHS // 40)
    a2.semilogy(np.arange(win - 1, EPOCHS), [np.median(losses[i - win + 1:i + 1]) for i in range(win - 1, EPOCHS)],
                "k", lw=1.5, label=f"running median of {win}")
    a2.set(xlabel="epoch", ylabel="test MSE (log)", title="test loss, log scale")
    a2.legend(fontsize=8)
    book.save(fig, "05_loss.png")

# %%
if plt:
    n = len(snaps)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.8), sharey=True)
    for ax, (ep_, pred) in zip(np.atleast_1d(axes), snaps.items()):
        ax.plot(grid, target(grid), "k", lw=1, label="target")
        ax.plot(grid, pred, "C1", lw=1.5, label="model")
        mse = losses[ep_ - 1] if ep_ > 0 else mse0
        ax.set(title=f"epoch {ep_}\nMSE {mse:.1f}", xlabel="x", ylim=(-20, 130))
    np.atleast_1d(axes)[0].legend(fontsize=7)
    book.save(fig, "05_fit_snapshots.png")

# %% [markdown]
# Early on, with σ and the learning rate near 1, the test error jumps by up to an order of
# magnitude from one epoch to the next: every step is large and noisy (chapter 2: the noise part
# of $G$ has a fixed size, about $\sigma\sqrt d$, and SGD moves by lr times it). As both decay the
# jumps shrink and the error falls steadily on the log scale, from around $10^3$ to a few units
# in the second half of training, until the learning rate reaches zero and the curve freezes. In
# the snapshots the network first gets the overall level and slope, then the shape; a later
# snapshot can be worse than an earlier one (the noise, not a trend). At the end the fit is
# close everywhere except near the edges of the interval, where training points are sparse.
#
# ## 5. Do the schedules matter?
#
# The notebook remarks that its linear decays were not tuned and that exponential decays are
# more usual for ES. Three schedules, same seed, same everything else — and two controls. A run
# with σ held at 1 differs from the notebook's in two ways at once: it optimises a more blurred
# loss, and it takes larger steps (the step $\mathrm{lr}\cdot G$ has a size proportional to
# $\mathrm{lr}\cdot\sigma$, section 2). To separate the two, the controls keep σ = 1 but shrink the
# learning rate so that the step matches the linear run's: $\mathrm{lr}\cdot\sigma = (1-e/E)^2$, the
# linear run's $\mathrm{lr}\cdot\sigma$; and, for those who read $G = -\sigma^2\sqrt P\,\hat g$ as "the
# step goes like $\sigma^2$", $\mathrm{lr}\cdot\sigma^2 = (1-e/E)^3$. The printout gives each run's mean
# step length $\lVert\Delta\theta\rVert$.

# %%
compare, step_log = {}, {}
for name, (s_fn, lr_fn) in schedules.items():
    if name.startswith("linear"):
        compare[name], step_log[name] = losses, steps           # already trained above
        continue
    e2, s2 = make_es(s_fn, lr_fn)
    _, compare[name], _, _, step_log[name] = train(e2, s2, EPOCHS, verbose=False)
tail = max(1, EPOCHS // 20)
for name, c in compare.items():
    print(f"{name:28s} final test MSE {c[-1]:10.3f}   (mean of the last 5% of epochs {c[-tail:].mean():8.3f}); "
          f"mean |step| {step_log[name].mean():.4f}")
# the full setting's numbers, quoted below (seeded runs: the same bits every time)
finals = {name: c[-1] for name, c in compare.items()}
for name, value in (("linear (notebook)", 2.63), ("cosine", 1.26), ("constant σ, linear lr", 9.09),
                    ("constant σ, lr·σ as linear", 11.92), ("constant σ, lr·σ² as linear", 17.61)):
    book.check(f"final test MSE, {name}", finals[name], value, 0.01, full_only=True)
if not book.SMALL:
    decayed = max(finals["linear (notebook)"], finals["cosine"])
    # "at least three times": the closest pair is 9.09 / 2.63 = 3.45, so the claim is checked at 3×
    assert all(finals[n] > 3 * decayed for n in finals if n.startswith("constant"))

# %%
if plt:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, c in compare.items():
        ax.semilogy(c, label=name)
    ax.set(xlabel="epoch", ylabel="test MSE (log)", title="Same ES, three schedules")
    ax.legend(fontsize=8)
    book.save(fig, "05_schedule_comparison.png")

# %% [markdown]
# In the full setting, keeping σ at 1 with the notebook's learning rate ends at least three times
# higher than either decaying schedule (9.09 against 2.63 and 1.26). The controls settle what
# that is due to. Matching the step ($\mathrm{lr}\cdot\sigma$ as in the linear run; its mean step
# length is indeed close to the linear run's) does *not* close the gap: that run ends at 11.92,
# and the $\mathrm{lr}\cdot\sigma^2$ control, with still smaller steps, at 17.61. So a constant σ is
# worse for a reason of its own, not only because it steps further: at σ = 1 the population
# evaluates the network far from its current weights, and the update climbs the blurred loss
# $F_\sigma$, whose optimum is not the sharp one (chapter 1). Decaying σ narrows the blur as
# training converges. Cosine ends lower than linear here (1.26 against 2.63), but these are single
# runs with one seed, on one BLAS thread: the last bits of each epoch's sums steer a 1000-epoch
# trajectory (docs/determinism.md), so one run does not rank the two decays (try `seed=2`). In the small setting — 80 epochs — none of this is
# settled yet, and the ranking can come out differently.
#
# ## Summary
#
# - One epoch = data → perturbed population forward → z-scored fitness → $G=-\sigma^2\sqrt P\hat g$ →
#   SGD → evaluation; `npegg.es.ES` is a thin wrapper over chapter 4's interface.
# - The notebook's recipe (4096 members, rank 1, groups of 128, σ and learning rate decayed
#   linearly from 1 to 0) fits $x^2+x+1$ to a test MSE of a few units on a target that spans 0–111.
# - Decaying σ matters for its own sake: with σ held at 1 the final error is three to seven times
#   that of the linear decay, even when the learning rate is reduced so that the steps are no
#   larger than those of the decaying run (measured with two controls).
#
# ## Exercises
#
# Solutions, checked by the test suite: `tutorials/solutions/05_fitting_a_curve.py`.
#
# 1. **Schedules by hand.** Write the linear and cosine decays from 1 to 0 over $E$ epochs as
#    one-line functions, check them against `npegg.optim`, and find the epoch from which the
#    cosine is below the linear one.
# 2. **The step scales with σ, not σ².** On $F(\theta) = -\lVert\theta-\theta_\star\rVert^2$ with a
#    `Parameter` of 50 entries, $P = 1024$, SGD at lr 1 and z-scored fitness, measure the length of
#    one step for $\sigma = 0.05, 0.1, 0.2$. Explain the ratios from $G = -\frac{\sigma}{\sqrt P}\sum_n f_n\varepsilon_n$.
# 3. **What the groups see.** With $P = 4096$, groups of 128 and 1024 training points, which points
#    does epoch $e$ score, and how often is each training point seen in 1000 epochs?
#
# **Next**: chapter 6 trains a byte-level language model with the same machinery.

# %%
book.finish(FIGURES)
