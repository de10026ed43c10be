# %% [markdown]
# # Chapter 8 — Q-EGGROLL: training with int8 weights and ±1 steps
#
# Chapter 7 built an integer-only forward pass. Here we train it, still without floating point:
# the parameters are int8 before, during and after training, and every update moves an entry by
# exactly **+1, −1 or 0**. This is nano-egg's Q-EGGROLL ("quantised EGGROLL"), implemented in
# `npegg/int8/qes.py` (the maths) and `npegg/noiser/qeggroll.py` (the noiser that applies it to
# a whole parameter tree).
#
# **What you will learn.**
#
# 1. how an integer member is perturbed, and what `sigma_shift` means as a float σ;
# 2. **sign fitness**: one number in {−1, 0, +1} per antithetic pair;
# 3. **the vote** $Z = \sum_i f_i A_i B_i^\top$, and how it relates to the ES gradient of chapter 1;
# 4. **the z-test threshold**: which entries of $Z$ are significant at level α, derived from the
#    central limit theorem, checked by simulation, and the decaying schedule of α (plot);
# 5. `use_clt` on and off, and **saturation at ±127**;
# 6. a short int-mode training run on the shipped corpus (CPython 3.11.7's standard-library source), with bits per byte going down
#    (plot);
# 7. **float or int8?** the same model trained both ways with the same budget.
#
# **Run it**: `python tutorials/08_q_eggroll.py` (or open it as a notebook). Figures go to
# `$NPEGG_TUTORIAL_OUT` (default `tutorials/figures/`); `NPEGG_TUTORIAL_SMALL=1` runs a small
# setting in a few seconds. The full setting took **8 min 22 s** on this machine (2 cores, heavily shared with other jobs).

# %%
import time

import numpy as np

import _book as book
from npegg import keys as K
from npegg.program.baselines import baselines
from npegg.program.data import BatchReader, load_corpus
from npegg.int8 import fixedpoint as fp
from npegg.int8 import qes
from npegg.program.evaluate import row_lanes
from npegg.program.runs.int_run import int_bpb, int_epoch
from npegg.models.common import simple_es_tree_key
from npegg.models.egg import EGG
from npegg.noise import Int8NoiseTable
from npegg.noiser.qeggroll import QEggRoll, get_lora_update_params
from npegg.tree import flatten

SMALL = book.choose_setting(None)  # None: NPEGG_TUTORIAL_SMALL decides; True = small (seconds), False = full
FIGURES = ["08_null_move_rate.png", "08_threshold_schedule.png", "08_training.png", "08_float_vs_int.png"]
plt = book.pyplot()
rng = np.random.default_rng(8)

# %% [markdown]
# ## 1. Integer perturbations, and σ in disguise
#
# Float EGGROLL perturbs a weight matrix by $\sigma A B^\top/\sqrt r$ with Gaussian factors. The
# integer version draws its factors from a table of int8 values, $16\times$ a unit-variance
# variable (so $|A_{jk}| \lesssim 80$), and adds to the matmul accumulator of chapter 7
#
# $$ \mathrm{acc} \leftarrow x W^\top + \Big\lfloor \frac{x B A^\top}{2^{4 + \texttt{sigma\_shift}}} \Big\rfloor . $$
#
# What is σ here? The term acts like a weight perturbation $\Delta \hat W = A B^\top / 2^{4+s}$ in
# the stored units (value × 16). Each entry of $A B^\top$ has standard deviation about
# $16 \cdot 16 = 256 = 2^8$, so $\Delta \hat W$ has standard deviation $2^{8 - 4 - s} = 2^{4-s}$ stored
# units, or $2^{-s}$ in real units — against real weights of standard deviation 1. So
# `sigma_shift = 4` (nano-egg's default) is $\sigma \approx 1/16$, and each extra bit of shift halves σ —
# until the perturbation is so small that the floor's own rounding (to 0 or −1) dominates it, as
# the `sigma_shift = 6` line below shows: there the noise is about half a stored unit whatever σ says.
#
# A member's noise is never stored: member $n$ at epoch $e$ reads a slice of the shared int8
# table whose start is an integer hash of (parameter key, epoch, $\lfloor n/2 \rfloor$). Members
# $2i$ and $2i+1$ read the same slice and get opposite signs on $A$: an **antithetic pair**.

# %%
table = Int8NoiseTable(seed=0, log2_size=22)                    # 2²² int8 entries = 4 MiB
frozen_noise = {"noise": table, "rank": 1, "noise_reuse": 1}
leaf_key = K.fold_in(K.key(0), 7)
A, B = get_lora_update_params(frozen_noise, (3, np.arange(6)), (64, 48), leaf_key)   # (6, 64, 1), (6, 48, 1) int8
print("table entries: std", round(float(table.table.std()), 2), " range", table.table.min(), "…", table.table.max())
print("members 0 and 1 share B:", np.array_equal(B[0], B[1]), "  and have opposite A:", np.array_equal(A[0], -A[1]))
for s in (2, 4, 6):
    dW = fp.floor_shift(A[0].astype(np.int32) @ B[0].astype(np.int32).T, 4 + s)   # (64, 48) stored units
    print(f"sigma_shift = {s}: std of ΔŴ = {dW.std():6.3f} stored units = {dW.std() / 16:.4f} real   (2^-{s} = {2.0 ** -s:.4f})")

# %% [markdown]
# ## 2. Sign fitness from antithetic pairs
#
# Each member's raw score $R_n$ is its summed integer log-likelihood (chapter 7, units of 1/16
# bit; higher is better). For a pair with perturbations $\pm\sigma\varepsilon_i$, a first-order
# expansion gives
#
# $$ R(\theta + \sigma\varepsilon_i) - R(\theta - \sigma\varepsilon_i) \approx 2\sigma\, \varepsilon_i^\top \nabla R(\theta), $$
#
# so the *sign* of the difference says on which side of θ the pair found the better score.
# Q-EGGROLL keeps just that: one int8 per pair,
#
# $$ f_i = \mathrm{sign}(R_{2i} - R_{2i+1}) \in \{-1, 0, +1\}, $$
#
# with 0 for a tie. This is the "fast" fitness and the default. The reference also has a
# "normalised difference" variant meant to give ±16; in integer arithmetic it returns −1 for ties
# and garbage once $|R_{2i} - R_{2i+1}| \ge 2897$ (its square overflows int32), and the
# reference's update crashes on it. npegg reproduces its fitness values for parity and refuses
# to update with it.

# %%
raw = np.array([-900, -950, -1200, -1100, -700, -700, 0, -3000], np.int32)    # 4 antithetic pairs
print("raw scores      ", raw)
print("sign fitness    ", qes.fitness_sign(raw))
print("normalised (ref)", qes.fitness_normalized(raw), " ← ±16, −1 for the tie, garbage for |diff| = 3000")

# %% [markdown]
# ## 3. The vote Z
#
# The update uses the even members $2i$ (sign +1) and their pair's fitness. For a matrix leaf it
# accumulates, in int32,
#
# $$ Z = \sum_{i=1}^{N} f_i\, A_i B_i^\top \qquad (N = P/2 \text{ pairs}), $$
#
# and for a vector leaf (biases, norm weights) $Z = \sum_i f_i E_i$. Compare the textbook ES
# estimate of chapter 1, $\hat g = \frac{1}{N\sigma}\sum_i f_i\, \varepsilon_i$: up to the positive
# fixed-point scale, $Z$ *is* $N\sigma\hat g$ with sign fitness. Q-EGGROLL then asks only one
# question per entry: is this coordinate of $\hat g$ significantly different from zero? If yes,
# move the entry by one unit in the direction of its sign; if not, leave it.
#
# The slow, obvious version adds one outer product per pair. npegg's `vote_lowrank` lays the
# $N$ rank-$r$ factors side by side and does a single exact integer matmul,
# $(a, N r) @ (N r, b)$, through float BLAS (chapter 7, section 7).

# %%
N, shape = book.setting((64, (64, 64)), (512, (256, 256)))
A, B = get_lora_update_params(frozen_noise, (5, 2 * np.arange(N)), shape, leaf_key)   # even members: sign +1
f = rng.choice(np.array([-1, 0, 1], np.int8), N)


def vote_loop(f, A, B):
    """Z = Σᵢ fᵢ Aᵢ Bᵢᵀ, one pair at a time, in int64."""
    Z = np.zeros((A.shape[1], B.shape[1]), np.int64)
    for i in range(len(f)):
        Z += int(f[i]) * (A[i].astype(np.int64) @ B[i].astype(np.int64).T)
    return Z


def median_time(fn, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


same = np.array_equal(vote_loop(f, A, B), qes.vote_lowrank(f, A, B, use_clt=True))
t_slow, t_fast = median_time(lambda: vote_loop(f, A, B)), median_time(lambda: qes.vote_lowrank(f, A, B, True))
print(f"N = {N} pairs, leaf {shape}: loop == vote_lowrank: {same}   "
      f"(median {t_slow * 1e3:.1f} ms vs {t_fast * 1e3:.1f} ms)")

# %% [markdown]
# ## 4. The z-test threshold
#
# Suppose a coordinate carries **no signal**: the fitnesses are unrelated to the noise. Then each
# entry of $Z$ is a sum of $N$ independent terms $f_i A_{i,j} B_{i,k}$ with mean 0. With
# $f_i = \pm1$ and table entries of standard deviation about 16, each term has standard deviation
# about $16 \cdot 16 = 256$, and by the central limit theorem
#
# $$ Z_{jk} \approx \mathcal{N}\big(0,\; 256^2 N\big) . $$
#
# A two-sided z-test at level α rejects "no signal" when $|Z_{jk}| / (256\sqrt N) \ge z_{1-\alpha/2}$,
# where $z_q = \Phi^{-1}(q)$ is the standard normal quantile. Multiply by 16 to stay in integers
# and write $\mathrm{thr} = \lfloor 16\, z_{1-\alpha/2} \rfloor$ (an int32 computed once per epoch, the only
# floating point in training):
#
# $$ \text{move entry } (j,k) \iff 16\,|Z_{jk}| \;\ge\; \tau = \mathrm{thr}\cdot\lfloor\sqrt N\rfloor\cdot 256 . $$
#
# With **`use_clt=False`** the vote counts signs instead, $Z = \sum_i f_i\, \mathrm{sgn}(A_i)\,\mathrm{sgn}(B_i)^\top$:
# each term is ±1 (or 0), so the standard deviation is $\sqrt N$ and $\tau = \mathrm{thr}\cdot\lfloor\sqrt N\rfloor$.
# That is a *majority vote* over pairs, in the spirit of signSGD; `use_clt=True` weights each
# pair's vote by the size of its perturbation at that entry.
#
# If the derivation is right, then under pure noise a fraction ≈ α of the entries move. The
# threshold rounds down ($\lfloor 16z \rfloor$), $\lfloor\sqrt N\rfloor \le \sqrt N$, and the table's standard
# deviation is a little below 16 (truncation toward zero), so we expect slightly *more* or fewer
# moves than α depending on which rounding dominates. We measure it: random ±1 fitnesses, the
# real noise of `N` pairs, the fraction of a leaf's entries that `threshold_step` moves.

# %%
alphas = np.array([0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005])
trials = book.setting(4, 16)
rates = {True: [], False: []}
for alpha in alphas:
    thr = int(qes.update_threshold(alpha))
    for clt in (True, False):
        moved = 0
        for _ in range(trials):
            f_null = rng.choice(np.array([-1, 1], np.int8), N)
            Z = qes.vote_lowrank(f_null, A, B, clt)
            moved += int(np.sum(qes.threshold_step(np.zeros(shape, np.int8), Z, thr, N, clt) != 0))
        rates[clt].append(moved / (trials * np.prod(shape)))
print(" α       thr   moved (use_clt=True)   moved (use_clt=False)")
for alpha, r1, r0 in zip(alphas, rates[True], rates[False]):
    print(f"{alpha:6.3f}  {int(qes.update_threshold(alpha)):4d}   {r1:10.4f}             {r0:10.4f}")

if plt:
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.loglog(alphas, rates[True], "o-", label="use_clt=True  (Σ f·A·Bᵀ)")
    ax.loglog(alphas, rates[False], "s--", label="use_clt=False (Σ f·sgn A·sgn Bᵀ)")
    ax.loglog(alphas, alphas, color="gray", lw=0.8, label="moved = α")
    ax.set_xlabel("significance level α")
    ax.set_ylabel("fraction of entries moved, random fitness")
    ax.set_title(f"The z-test under no signal (N = {N} pairs)")
    ax.legend(fontsize=8)
    book.save(fig, "08_null_move_rate.png")

# %% [markdown]
# The measured rates sit on the diagonal: the threshold does what its derivation says. (At α = 0.5
# the truncated threshold $\lfloor 16 \cdot 0.674 \rfloor = 10$ corresponds to $z = 0.625$, so about 53 %
# move; at small α both versions land slightly below α.)
#
# ### The schedule
#
# nano-egg does not keep α fixed. With its command-line `alpha` > 1 it decays the level over
# epochs ([docs/int8-spec.md §8.3](../docs/int8-spec.md)), and with `alpha` < 1 it uses that constant:
#
# $$ \alpha_e = \frac{1}{(2^{\texttt{alpha}} - 1)\, e / \texttt{decay} + 1}, \qquad
#    \mathrm{thr}_e = \big\lfloor 16\, \Phi^{-1}(1 - \alpha_e/2) \big\rfloor . $$
#
# At epoch 0, $\alpha_0 = 1$ and the threshold is **0**: every entry moves (an entry with $Z = 0$
# moves *down*, because the step is "+1 if $Z > 0$ else −1"). Then the test tightens, and later
# epochs make fewer, surer moves — an annealing schedule expressed as a significance level.
# The quantile needs no SciPy: `statistics.NormalDist().inv_cdf` is in the standard library.

# %%
epochs_plot = np.arange(3001)
schedules = {alpha: qes.threshold_schedule(alpha, len(epochs_plot), decay=1000) for alpha in (4.0, 2.0, 0.5)}
for alpha, (a_t, thr_t) in schedules.items():
    print(f"alpha = {alpha}: threshold at epochs 0, 100, 1000, 3000 = {thr_t[[0, 100, 1000, 3000]]}")

if plt:
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    for alpha, (a_t, thr_t) in schedules.items():
        ax0.plot(epochs_plot, thr_t, label=f"alpha = {alpha}")
        ax1.semilogy(epochs_plot, a_t, label=f"alpha = {alpha}")
    ax0.set_xlabel("epoch"); ax0.set_ylabel("thr (16 · z)"); ax0.set_title("Update threshold (decay = 1000)")
    ax1.set_xlabel("epoch"); ax1.set_ylabel("αₑ"); ax1.set_title("Significance level")
    ax0.legend(fontsize=8); ax1.legend(fontsize=8)
    book.save(fig, "08_threshold_schedule.png")

# %% [markdown]
# ## 5. The step, and saturation at ±127
#
# The step itself is three lines: keep the entry where $16|Z| < \tau$ (strict), otherwise move it
# by +1 if $Z > 0$ and −1 if not, then clip to the symmetric int8 range. An entry at 127 with a
# positive vote stays at 127: **saturation**, so the parameters are int8 after any number of
# updates, with no overflow and no −128. The slow version below spells this out entry by entry;
# `qes.threshold_step` is its vectorised twin.

# %%
def step_loop(p, Z, thr, n, use_clt):
    tau = thr * int(np.sqrt(n)) * (256 if use_clt else 1)
    out = p.copy()
    for idx in np.ndindex(p.shape):
        if 16 * abs(int(Z[idx])) >= tau:
            out[idx] = min(127, max(-127, int(p[idx]) + (1 if Z[idx] > 0 else -1)))
    return out


p = np.array([127, 127, -127, -127, 5, 5, 5], np.int8)
Z = np.array([10**6, -10**6, -10**6, 10**6, 0, 200, -10**6], np.int32)
for thr in (0, 20):
    new = qes.threshold_step(p, Z, thr, 64, use_clt=True)
    assert np.array_equal(new, step_loop(p, Z, thr, 64, True))
    print(f"thr = {thr:2d}:  p {p}  Z {Z}  →  {new}")

# %% [markdown]
# ## 6. A short int-mode training run
#
# Now everything together, with `npegg.program.runs.int_run.int_epoch`: one generation is a perturbed
# forward of the whole population over its bytes (exact integer log-likelihood per member), sign
# fitness per pair, and the ±1 update of every leaf. Members read nano-egg-style batches
# (`npegg.program.data.BatchReader`, group size 2 so both members of a pair read the same bytes), and
# their recurrent states persist from one generation to the next.
#
# Data: a slice of the shipped corpus, CPython 3.11.7's standard-library source files
# (`load_corpus(None)`; no download; chapter 6). We measure bits per byte on held-out validation bytes
# with `int_bpb` (the unperturbed model on 128 rows of the validation bytes, each read from a zero
# state; the only floating point is the final division),
# and compare with the honest baselines of chapter 6, computed on the same bytes.
#
# We train twice, with `use_clt` on and off, from the same initial parameters. The α = 4
# schedule is compressed to the length of the run (`alpha_decay_timestep` = the number of
# epochs), as in npegg's int-mode test.

# %%
H, POP, T, EPOCHS, N_TRAIN, N_VALID, EVAL_EVERY = book.setting((16, 64, 16, 60, 60_000, 1024, 10),
                                                              (64, 256, 32, 400, 300_000, 4096, 40))
corpus = load_corpus(None)
train, valid = corpus.train[:N_TRAIN], corpus.valid[:N_VALID]
lanes = row_lanes(valid, 128)                  # the validation bytes: 128 rows, each from a zero state
base = baselines(train, valid)
print(corpus.description)
print(f"this run: {len(train):,} training bytes, {len(valid):,} validation bytes; baselines on them:",
      {k: round(v, 3) for k, v in base.items()})

_, params0, scan_map, es_map = EGG.rand_init(K.fold_in(K.key(0), 0), H, 1, 256)
es_keys = simple_es_tree_key(params0, K.fold_in(K.key(0), 1), scan_map)
n_params = sum(v.size for v in flatten(params0).values())
print(f"EGG, H = {H}, 1 layer: {n_params:,} int8 parameters; population {POP}, {T} bytes per member per epoch")


def train_run(use_clt):
    frozen, nparams = QEggRoll.init_noiser(params0, 4, noise=table, alpha=4.0, alpha_decay_timestep=EPOCHS,
                                           use_clt=use_clt)
    params = params0
    reader = BatchReader(train, POP, 2, T)
    pos = reader.init()
    states = EGG.init_state(params, POP)                                  # (P, L, H) int8
    log = {"epoch": [], "valid": [], "train": [], "moved": [], "thr": [], "alpha": []}
    for epoch in range(EPOCHS):
        if epoch % EVAL_EVERY == 0:
            log["epoch"].append(epoch)
            log["valid"].append(int_bpb(params, frozen, nparams, es_keys, lanes))
        tokens, pos = reader.next(pos)                                      # (P, T+1) uint8
        new, nparams, states, raw, fitness = int_epoch(params, frozen, nparams, es_keys, es_map, tokens, states, epoch)
        moved = sum(int(np.sum(a != b)) for a, b in zip(flatten(new).values(), flatten(params).values()))
        params = new
        log["train"].append(-raw.mean() / 16 / T)                            # member average, bits per byte
        log["moved"].append(moved / n_params)
        log["thr"].append(QEggRoll.threshold(frozen, nparams, epoch))
        log["alpha"].append(float(qes.alpha_schedule(4.0, epoch, EPOCHS)))
    log["epoch"].append(EPOCHS)
    log["valid"].append(int_bpb(params, frozen, nparams, es_keys, lanes))
    return params, log


runs = {}
for use_clt in (True, False):
    t0 = time.perf_counter()
    params, log = train_run(use_clt)
    runs[use_clt] = (params, log)
    flat = flatten(params)
    sat = sum(int(np.sum(np.abs(v) == 127)) for v in flat.values())
    print(f"use_clt={use_clt!s:5}: valid bpb {log['valid'][0]:.3f} → {log['valid'][-1]:.3f} in {EPOCHS} epochs "
          f"({time.perf_counter() - t0:.0f} s); dtypes {sorted({str(v.dtype) for v in flat.values()})}, "
          f"{sat} entries at ±127")
    half = slice(EPOCHS // 2, None)
    print(f"    second half of the run: {np.mean(log['moved'][half]):.1%} of entries moved per epoch, "
          f"α_e = {np.mean(log['alpha'][half]):.1%} on average (the rate for pure noise)")
# the full setting's numbers, quoted below (seeded runs: the same bits every time)
clt, sign_only = runs[True][1], runs[False][1]
half = slice(EPOCHS // 2, None)
book.check("use_clt=True: first validation bpb", clt["valid"][0], 8.5, 0.05, full_only=True)
book.check("use_clt=True: final validation bpb", clt["valid"][-1], 4.71, 0.01, full_only=True)
book.check("use_clt=False: final validation bpb", sign_only["valid"][-1], 4.94, 0.01, full_only=True)
book.check("second half: fraction of entries moved", np.mean(clt["moved"][half]), 0.081, 0.001, full_only=True)
book.check("second half: mean alpha_e", np.mean(clt["alpha"][half]), 0.084, 0.001, full_only=True)
below_uniform = next(e for e, v in zip(clt["epoch"], clt["valid"]) if v < 8)
book.check("first validation below 8 bits, epoch", below_uniform, 40, 0, full_only=True)
if not book.SMALL:
    assert clt["valid"][-1] > base["unigram"] - 0.1 and clt["valid"][-1] < sign_only["valid"][-1]

# %%
if plt:
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    for use_clt, style in ((True, "-"), (False, "--")):
        log = runs[use_clt][1]
        ax0.plot(log["epoch"], log["valid"], "o" + style, ms=3, label=f"validation, use_clt={use_clt}")
        ax0.plot(np.arange(EPOCHS), log["train"], style, lw=0.6, alpha=0.5, label=f"train (population), use_clt={use_clt}")
    for name, ls in (("uniform", ":"), ("unigram", "-."), ("bigram", ":")):
        ax0.axhline(base[name], color="gray", lw=0.8, ls=ls)
        ax0.text(EPOCHS, base[name], f" {name}", va="center", fontsize=7, color="gray")
    ax0.set_xlabel("epoch"); ax0.set_ylabel("bits per byte"); ax0.set_title("Int-mode EGG on stdlib source")
    ax0.legend(fontsize=7)
    log = runs[True][1]
    ax1.plot(np.arange(EPOCHS), np.array(log["moved"]) * 100, label="% of parameters moved (use_clt=True)")
    ax1.plot(np.arange(EPOCHS), np.array(runs[False][1]["moved"]) * 100, "--", label="% moved (use_clt=False)")
    ax1.plot(np.arange(EPOCHS), np.array(log["alpha"]) * 100, ":", color="gray", label="100·αₑ: pure noise would move this")
    ax1.set_xlabel("epoch"); ax1.set_ylabel("% of int8 entries changed by ±1")
    ax1.set_yscale("log")
    ax1b = ax1.twinx()
    ax1b.plot(np.arange(EPOCHS), log["thr"], color="k", lw=0.8, label="threshold")
    ax1b.set_ylabel("threshold thr")
    ax1.legend(fontsize=7, loc="upper right"); ax1.set_title("How much each update moves")
    book.save(fig, "08_training.png")

# %% [markdown]
# Reading the plot (the numbers are those of the full setting; the printout above has this
# run's): at epoch 0 the threshold is 0 and *every* entry moves by ±1; as the threshold rises,
# each update touches a smaller fraction of the parameters. Validation bits per byte fall from
# 8.5 to 4.7 in 400 epochs — below the uniform 8 bits at the first validation (epoch 40), close to but not
# yet below the unigram baseline (4.4). ±1 steps on int8 weights are slow learners, and nano-egg
# runs thousands of epochs at larger populations. Everything stayed int8 (the dtypes above).
#
# The right panel holds a lesson about the z-test. In the second half of the run the fraction of
# entries that move is close to $\alpha_e$ (in the full setting 8.1 % against 8.4 %), the
# fraction that would move if the fitnesses were pure noise (section 4). Entry by entry, the
# test can hardly tell these votes from noise, and many individual moves are wrong.
# Learning still happens because, summed over tens of thousands of entries and many epochs, the
# moves lean in the right direction. A faster decay of α (a stricter test sooner) trades fewer
# wrong moves for fewer right ones.
#
# In this run `use_clt=True` learned faster than the sign-only vote (4.71 against 4.94 bits):
# weighting each pair by the size of its perturbation at an entry carries more information than
# its sign alone. That is one short run on one corpus: the gap is what we measured, not a law.
#
# ## 7. Float or int8: the same model, the same budget
#
# How much does training in integers cost? `npegg train` runs both: `--mode int` is the run above
# (nano-egg's int8 EGG model and Q-EGGROLL), `--mode float --cell egg` the same architecture
# (embedding, the gated cell of chapter 6 with its two state matrices, MLP, head) in float32,
# trained by float EGGROLL with Adam. Same width, layers, population, bytes per member, epochs and
# training bytes, and the same validation protocol (`run.valid_bpb()`, the whole validation
# split). The float run's σ and learning rate are `TrainConfig`'s defaults; the int run uses
# Q-EGGROLL's defaults (`sigma_shift` 4, α = 4 decayed over the run).

# %%
from dataclasses import replace as _replace                                  # noqa: E402

from npegg.program.config import TrainConfig                                          # noqa: E402
from npegg.program.loop import History, train as train_lm                              # noqa: E402
from npegg.program.runs import make_run                                               # noqa: E402

same_bytes = _replace(corpus, train=train, valid=valid)
fvi_epochs = book.setting(30, 200)
# the float model shaped like the EGG: an MLP 4H per layer, no direct path, every embedding row in
# the update, lr 0.03 (npegg train's float defaults are another model: width 32, a direct path)
FLOAT_TWIN = dict(mlp_ratio=4, direct_path=False, embedding_update="all", lr=0.03)
fvi = {}
for mode in ("float", "int"):
    cfg = TrainConfig(mode=mode, cell="egg", hidden_dim=H, n_layers=1, pop_size=POP, tokens_per_update=T,
                      epochs=fvi_epochs, eval_every=book.setting(fvi_epochs, 40), group_size=2, sample_bytes=0,
                      **({} if mode == "int" else FLOAT_TWIN)).resolved()
    cfg.validate()
    run_m = make_run(cfg, same_bytes)
    t0 = time.perf_counter()
    hist = train_lm(run_m, History.empty())
    fvi[mode] = (hist, time.perf_counter() - t0)
    v = [x for x in hist.valid_bpb if np.isfinite(x)]
    print(f"{mode:5s}: validation bpb {v[0]:.3f} -> {v[-1]:.3f} in {fvi_epochs} epochs, {fvi[mode][1]:.0f} s")
final_fvi = {m: [x for x in h.valid_bpb if np.isfinite(x)][-1] for m, (h, _) in fvi.items()}
print(f"int8 minus float after {fvi_epochs} epochs: {final_fvi['int'] - final_fvi['float']:+.3f} bits per byte")
book.check("float EGG, final validation bpb", final_fvi["float"], 4.55, 0.01, full_only=True)   # quoted below
book.check("int8 EGG, final validation bpb", final_fvi["int"], 4.61, 0.01, full_only=True)

# %%
if plt:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for mode, (hist, _) in fvi.items():
        ep, va = np.array(hist.epoch), np.array(hist.valid_bpb)
        ok = np.isfinite(va)
        ax.plot(ep[ok], va[ok], "o-", ms=3, label=f"{mode}: validation")
    for name, ls in (("unigram", "-."), ("bigram", ":")):
        ax.axhline(base[name], color="gray", lw=0.8, ls=ls)
        ax.text(fvi_epochs, base[name], f" {name}", va="center", fontsize=7, color="gray")
    ax.set(xlabel="epoch", ylabel="bits per byte", title=f"EGG model, H = {H}, P = {POP}: float32 vs int8 training")
    ax.legend(fontsize=8)
    book.save(fig, "08_float_vs_int.png")

# %% [markdown]
# In the full setting (200 epochs) the float model ends at 4.55 bits per byte and the int8 one at
# 4.61: at this budget, training in integers costs about 0.06 bits per byte. (In the small
# setting, 30 epochs, the order can flip: the float run's learning rate is tuned for longer
# runs.) The float model takes continuous, Adam-scaled steps; the int8 one moves each weight by
# $\pm1$ (a sixteenth of a unit) when a vote passes the z-test, with no learning rate to tune. What the integer run
# buys in any case is a model with no floating point at all — forward, fitness and update — that
# runs bit for bit the same on any hardware. One short run each, on one corpus, with default
# hyperparameters: the gap is what we measured here, not a law.
#
# ## Summary
#
# - `sigma_shift` $s$ is a float σ of about $2^{-s}$ in disguise; antithetic pairs share a slice
#   of the int8 noise table and differ in the sign of $A$.
# - Fitness is one sign per pair; the vote $Z = \sum_i f_i A_i B_i^\top$ is $N\sigma\hat g$ up to scale.
# - An entry moves by ±1 when $16|Z| \ge \mathrm{thr}\cdot\lfloor\sqrt N\rfloor\cdot 256$ (or without the 256 for
#   `use_clt=False`): a z-test at level α, which under pure noise moves a fraction ≈ α, as measured.
# - α decays over epochs (threshold 0 at epoch 0); the clip keeps every parameter in [−127, 127].
# - The same EGG model trained in float32 and in int8 with the same budget ends 0.06 bits per
#   byte apart (4.55 and 4.61 in the full setting); the int8 run has no floating point at all.
#
# ## Exercises
#
# Solutions, checked by the test suite: `tutorials/solutions/08_q_eggroll.py`.
#
# 1. **σ in disguise.** For `sigma_shift` $s = 0, \dots, 6$, measure the standard deviation of
#    $\lfloor AB^\top/2^{4+s}\rfloor$ (int8 table factors, rank 1) in stored units and compare it with
#    $2^{4-s}$. From which $s$ on does the floor's own rounding dominate?
# 2. **Signs see only the order.** Show that `qes.fitness_sign` gives the same fitnesses for raw
#    scores $R$ and for $h(R)$ with any strictly increasing $h$ (try $e^{R/100}$ and $R^3$), and what a
#    tie within a pair gives.
# 3. **The schedule.** With $\alpha = 4$ and the default decay of 1000 epochs, from which epoch on
#    is $\alpha_e < 0.05$, and what is the integer threshold `thr` there? Derive both, then check
#    them against `qes.alpha_schedule` and `qes.update_threshold`.
#
# **Next**, chapter 9 turns this exactness into a service: every number here is an integer
# computed in an order-independent way, so another implementation can be checked against npegg
# **bit for bit**.

# %%
book.finish(FIGURES)
