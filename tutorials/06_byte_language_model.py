# %% [markdown]
# # Chapter 6 — A byte-level language model
#
# Chapters 1–5 taught ES on problems whose answer we knew. Now the real task of this project:
# a recurrent language model that reads text one **byte** at a time and learns, by evolution
# strategies alone, to predict the next byte. Before training anything we need a way to score
# it, and honest numbers to score it against.
#
# **What you will learn.**
#
# 1. **Bits per byte** (bpb): what it measures, and why 8 is the score of knowing nothing.
# 2. **Honest baselines** on the same bytes — uniform, unigram, bigram, gzip and lzma — computed
#    slowly by hand and then with `npegg.program.baselines`.
# 3. **Two recurrent cells**: nano-egg's gated cell, whose gate reads the state, and the minGRU of
#    Feng et al. (2024), whose gates read only the input, so that the recurrence becomes a
#    *linear scan* that needs no Python loop over time. We derive the scan, check it against the
#    step-by-step loop, and time both — with a result that may surprise you.
# 4. **A short ES training run** of both cells with npegg's training API (`npegg.program.loop`), a
#    learning curve against the baselines, and text samples.
#
# **Run it**: `python tutorials/06_byte_language_model.py` (or open it as a notebook). Figures go
# to `$NPEGG_TUTORIAL_OUT` (default `tutorials/figures/`); `NPEGG_TUTORIAL_SMALL=1` runs a small
# setting in a few seconds. The full setting took **6 min 23 s** on this machine (2 cores, heavily shared with other jobs).

# %%
import lzma
import math
import time
import zlib

import numpy as np

import _book as book
from npegg import keys as K
from npegg.program.baselines import NAMES, baselines
from npegg.program.data import load_corpus
from npegg.program.evaluate import sample_bytes
from npegg.models.common import CommonParams, simple_es_tree_key
from npegg.models.lm import EggCell
from npegg.models.mingru import MinGRUCell, linear_scan, linear_scan_loop
from npegg.noise import NoiseTable
from npegg.noiser import EggRoll
from npegg.tree import flatten
from npegg.program.config import TrainConfig
from npegg.program.loop import History, train
from npegg.program.runs import make_run

SMALL = book.choose_setting(None)  # None: NPEGG_TUTORIAL_SMALL decides; True = small (seconds), False = full
FIGURES = ["06_baselines.png", "06_scan_vs_loop.png", "06_learning_curve.png"]
plt = book.pyplot()
rng = np.random.default_rng(6)

# %% [markdown]
# ## 1. Bits per byte
#
# A language model over bytes gives, at every position $t$ of a stream $x_1 \dots x_n$, a
# distribution $p(\cdot \mid x_{<t})$ over the 256 possible next bytes. Its score on the stream is
#
# $$ \mathrm{bpb} = -\frac{1}{n} \sum_{t=1}^{n} \log_2 p(x_t \mid x_{<t}) . $$
#
# Why "bits"? An arithmetic coder driven by the model stores the stream in
# $-\sum_t \log_2 p(x_t \mid x_{<t})$ bits, plus at most 2. So bpb *is* a compression rate, on the same
# scale as "gzip turns this file into 2 bits per byte". A model that knows nothing gives every
# byte probability 1/256 and pays $\log_2 256 = 8$ bits per byte; anything useful is below 8. (The
# ES *fitness* of a member is the same quantity with the opposite sign: the log-likelihood of the
# bytes it read.)
#
# Our text is the corpus shipped inside npegg: the 173 `.py` files of CPython 3.11.7's standard
# library (2,986,837 bytes, PSF licence; `npegg/program/corpus/README.md` lists them), the same
# bytes on every Python and platform and checked against their sha256 when read. We read it with
# `npegg.program.data.load_corpus(None)` (no download), split by document into training and
# validation bytes. Byte 0 marks the start of each document.

# %%
corpus = load_corpus(None, max_docs=book.setting(12, None))
print(corpus.description)
train_bytes, valid_bytes = corpus.train, corpus.valid
print("the first validation bytes:", bytes(valid_bytes[1:80]))

# %% [markdown]
# ## 2. Honest baselines
#
# A bpb means little alone. These are what simple methods get on **the same validation bytes**:
#
# * **uniform**: 8 bits, every byte equally likely;
# * **unigram**: $p(b) = (c_b + 1) / (n + 256)$ from the byte counts $c_b$ of the $n$ *training* bytes
#   (add-one smoothing, so no byte has probability 0);
# * **bigram**: $p(b \mid a) = (c_{ab} + 1) / (c_{a\cdot} + 256)$ from the counts of adjacent pairs
#   in the training bytes — a model with one byte of memory;
# * **gzip** and **lzma** at maximum compression: $8 \cdot (\text{compressed size}) / n$ for $n$ validation bytes. They never
#   see the training bytes, but they adapt as they read and exploit long repeats, which source
#   code is full of.
#
# The slow, obvious version first: count with a Python `dict`, sum the log-probabilities in a
# Python loop. Then `npegg.program.baselines`, which does it with `bincount` and fancy indexing.

# %%
def unigram_bpb_slow(train, valid):
    counts = {}
    for b in train.tolist():
        counts[b] = counts.get(b, 0) + 1
    total = 0.0
    for b in valid.tolist():
        total -= math.log2((counts.get(b, 0) + 1) / (len(train) + 256))
    return total / len(valid)


def bigram_bpb_slow(train, valid):
    pairs, firsts = {}, {}
    t = train.tolist()
    for a, b in zip(t[:-1], t[1:]):
        pairs[a, b] = pairs.get((a, b), 0) + 1
        firsts[a] = firsts.get(a, 0) + 1
    total, prev = 0.0, t[-1]                        # the byte before valid[0] is train[-1]
    for b in valid.tolist():
        total -= math.log2((pairs.get((prev, b), 0) + 1) / (firsts.get(prev, 0) + 256))
        prev = b
    return total / len(valid)


t0 = time.perf_counter()
slow = {"uniform": 8.0, "unigram": unigram_bpb_slow(train_bytes, valid_bytes),
        "bigram": bigram_bpb_slow(train_bytes, valid_bytes),
        "gzip": 8 * len(zlib.compress(valid_bytes.tobytes(), 9)) / len(valid_bytes),
        "lzma": 8 * len(lzma.compress(valid_bytes.tobytes(), preset=9 | lzma.PRESET_EXTREME)) / len(valid_bytes)}
t_slow = time.perf_counter() - t0
t0 = time.perf_counter()
base = baselines(train_bytes, valid_bytes)
t_fast = time.perf_counter() - t0
print(f"{'baseline':22s} {'slow':>8s} {'npegg':>8s}")
for k in base:
    print(f"{NAMES[k]:22s} {slow[k]:8.4f} {base[k]:8.4f}")
assert all(abs(slow[k] - base[k]) < 1e-9 for k in base)
print(f"equal to 1e-9; {t_slow:.2f} s by loops, {t_fast:.2f} s with npegg.program.baselines (lzma dominates both)")

if plt:
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.barh([NAMES[k] for k in base][::-1], list(base.values())[::-1], color="0.6")
    for i, v in enumerate(list(base.values())[::-1]):
        ax.text(v + 0.05, i, f"{v:.2f}", va="center", fontsize=8)
    ax.set_xlabel("bits per byte on the validation bytes (lower is better)")
    ax.set_title(f"Baselines on {len(valid_bytes):,} validation bytes of stdlib source", fontsize=10)
    book.save(fig, "06_baselines.png")

# %% [markdown]
# Two lessons. The count models are modest — the bigram's one byte of memory is worth about one
# bit over the unigram. The compressors are strong: source code repeats whole identifiers and
# lines, and lzma's long-range matching turns that into well under 2 bits per byte on the full
# corpus. A small recurrent model trained for a minute on a CPU will not come near lzma; the unigram
# and bigram are the realistic first targets, and we will say plainly where we land.
#
# ## 3. Two recurrent cells
#
# The model (`npegg.models.lm.ByteLM`) is nano-egg's: embedding → $L$ pre-norm layers of
# [LayerNorm → recurrent cell → residual → LayerNorm → MLP → residual] → LayerNorm → head. Only
# the cell differs. With $x_t$ the cell's input, $s_t$ its state and $\mathrm{sigmoid}(z) = 1/(1+e^{-z})$
# (this book keeps σ for the noise scale):
#
# **nano-egg's cell** (`EggCell`), an MGU-style variant of minGRU *with recurrent matrices*:
#
# $$ f_t = \mathrm{sigmoid}(W_f x_t + U_f s_{t-1} + b_f), \qquad
#    c_t = \tanh\big(W_h x_t + U_h (f_t \odot s_{t-1}) + b_h\big), \qquad
#    s_t = s_{t-1} + f_t \odot (c_t - s_{t-1}). $$
#
# **The minGRU** (`MinGRUCell`, Feng et al., "Were RNNs All We Needed?", 2024):
#
# $$ z_t = \mathrm{sigmoid}(W_z x_t + b_z), \qquad \tilde h_t = W_h x_t + b_h, \qquad
#    h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t . $$
#
# The difference is two state matrices: nano-egg's gate $f_t$ reads the state $s_{t-1}$ through
# $U_f$, and its candidate reads it through $U_h$; the minGRU has neither. So step $t$ cannot start before step $t-1$ is done,
# and every step costs two matmuls. The minGRU's gate and candidate read only $x_t$: for a whole
# chunk of $T$ steps they are two matmuls over all $P \cdot T$ rows at once, and what remains is
#
# $$ h_t = a_t \odot h_{t-1} + b_t, \qquad a_t = 1 - z_t,\; b_t = z_t \odot \tilde h_t \text{ known in advance,} $$
#
# a **linear recurrence**, elementwise in the $D$ channels.
#
# ### The scan
#
# Unrolled, $h_t = \big(\prod_{u \le t} a_u\big) h_0 + \sum_{s \le t} \big(\prod_{s < u \le t} a_u\big) b_s$. Write a
# step as the pair $(a, b)$, meaning $h \mapsto a h + b$. Doing $(a_1, b_1)$ and then $(a_2, b_2)$ gives
# $h \mapsto a_2(a_1 h + b_1) + b_2$, i.e. the pair
#
# $$ (a_1, b_1) \bullet (a_2, b_2) = (a_1 a_2,\; a_2 b_1 + b_2), $$
#
# and this composition is **associative**. So the prefix compositions can be formed in any
# bracketing. The Hillis–Steele scan forms them by doubling: for $d = 1, 2, 4, \dots < T$, for all
# $t \ge d$ at once,
#
# $$ b_t \leftarrow b_t + a_t\, b_{t-d}, \qquad a_t \leftarrow a_t\, a_{t-d} . $$
#
# After pass $d$, $(a_t, b_t)$ composes the last $2d$ steps; after $\lceil \log_2 T \rceil$ passes, $b_t = h_t$
# (with $h_0$ folded into $b_1$ first). Each pass is one vectorised operation over a $(P, T, D)$
# array: **no Python loop over time**. `npegg.models.mingru.linear_scan` is this;
# `linear_scan_loop` is its twin, one step at a time. First: do they agree?

# %%
P, D = book.setting(16, 64), 64
T_check = 256
z = 1 / (1 + np.exp(-rng.standard_normal((P, T_check, D))))
a = (1 - z).astype(np.float32)                                           # (P, T, D) in (0, 1)
b = (z * rng.standard_normal((P, T_check, D))).astype(np.float32)        # (P, T, D)
h0 = rng.standard_normal((P, D)).astype(np.float32)                      # (P, D)
exact = linear_scan_loop(a.astype(np.float64), b.astype(np.float64), h0.astype(np.float64))
h_scan, h_loop = linear_scan(a, b, h0), linear_scan_loop(a, b, h0)
print(f"T = {T_check}, float32: |scan − exact| ≤ {np.abs(h_scan - exact).max():.1e}, "
      f"|loop − exact| ≤ {np.abs(h_loop - exact).max():.1e}, |scan − loop| ≤ {np.abs(h_scan - h_loop).max():.1e}")

# %% [markdown]
# They agree to float32 rounding (about $10^{-7}$ here, for values of order 1). The scan only
# multiplies numbers in $[0, 1]$ and adds, so nothing grows. How does the rounding error grow with
# the length $T$? Each $h_t$ of the scan passes through $\lceil\log_2 T\rceil$ rounded multiply-adds,
# the loop's through up to $T$, but the loop's old errors are damped by the factors $a_t < 1$
# (here about $0.5$ on average), so neither has to grow much. Measured against float64, with the
# worst $|h_t|$ error over all $(P, T, D)$ entries:

# %%
scan_Ts = book.setting([16, 64, 256, 1024], [16, 64, 256, 1024, 4096])
scan_err = {}
for T_e in scan_Ts:
    z_e = 1 / (1 + np.exp(-rng.standard_normal((4, T_e, D))))
    a_e = (1 - z_e).astype(np.float32)                                     # (4, T, D)
    b_e = (z_e * rng.standard_normal((4, T_e, D))).astype(np.float32)
    h0_e = rng.standard_normal((4, D)).astype(np.float32)
    ex = linear_scan_loop(a_e.astype(np.float64), b_e.astype(np.float64), h0_e.astype(np.float64))
    scan_err[T_e] = (np.abs(linear_scan(a_e, b_e, h0_e) - ex).max(), np.abs(linear_scan_loop(a_e, b_e, h0_e) - ex).max())
    print(f"T = {T_e:5d}: max |scan - exact| {scan_err[T_e][0]:.2e}, max |loop - exact| {scan_err[T_e][1]:.2e}  "
          f"(float32 ulp at 1: {np.finfo(np.float32).eps:.1e})")
worst = max(max(v) for v in scan_err.values())
book.check("worst float32 error of scan and loop, in units of float32 eps", worst / np.finfo(np.float32).eps, 0, 16)

# %% [markdown]
# Both stay within a few units of float32 rounding at every length: the error does not grow in
# any way that matters, because the decay factors forget old rounding. (The $\log_2 T$ depth is a
# bound for the worst case, where every $a_t$ is near 1; on these gates it is not reached.)
#
# Now the whole cell, perturbed: a population of $P$ members, each with its own EGGROLL
# perturbation of $W_z$, $W_h$ and the biases (chapter 3), over a chunk of $T$ steps from a
# carried state. The cell's `forward` (batched projections + scan) must equal $T$ calls of its
# one-step form `step` — the slow twin that a textbook RNN loop would be.

# %%
noise_table = NoiseTable(seed=0, log2_size=20)          # one shared table (chapter 4), 4 MiB


def standalone(cell_cls, dim, pop, seed=0):
    """A cell with its own params, keys and EggRoll noiser; returns CommonParams for a population."""
    init = cell_cls.rand_init(K.fold_in(K.key(seed), 0), dim)
    keys = simple_es_tree_key(init.params, K.fold_in(K.key(seed), 1), init.scan_map)
    frozen, nparams = EggRoll.init_noiser(init.params, 0.05, 0.01, noise=noise_table)
    return CommonParams(EggRoll, frozen, nparams, None, init.params, keys, (0, np.arange(pop)))


T = 64
x = rng.standard_normal((P, T, D)).astype(np.float32)                     # (P, T, D) cell inputs
s0 = rng.standard_normal((P, D)).astype(np.float32) * 0.5                 # (P, D) carried state
mingru = standalone(MinGRUCell, D, P)
h_fwd, h_last = MinGRUCell._forward(mingru, x, s0)                        # (P, T, D), (P, D)
s = s0
for t in range(T):
    s = MinGRUCell.step(mingru, x[:, t], s)
print(f"MinGRUCell: scan forward vs {T} one-step calls, max |difference| = {np.abs(h_last - s).max():.1e}")

# %% [markdown]
# ### Timing: what makes the minGRU fast?
#
# Four ways to run a chunk of $T$ steps for the same population, timed side by side (interleaved,
# medians):
#
# 1. **minGRU, step loop**: $T$ calls of `step` — the two projections recomputed inside the loop,
#    as a textbook RNN does;
# 2. **minGRU, batched projections + sequential recurrence**: the projections for all steps at
#    once (the gates allow it), then `linear_scan_loop` — a Python loop over $T$, but each step
#    is only an elementwise multiply-add (npegg's forward does this);
# 3. **minGRU, batched projections + parallel scan**: `linear_scan`, no loop over time;
# 4. **nano-egg's cell**: its input projections are batched too, but $U_f s$ and $U_h(f \odot s)$
#    must be computed inside the loop over $T$.

# %%
def interleaved(fns, repeats):
    """Median seconds of each function, run in rotating order."""
    times = [[] for _ in fns]
    for r in range(repeats):
        for i in np.roll(np.arange(len(fns)), r):
            t0 = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def step_loop(cp, x, s):
    for t in range(x.shape[1]):
        s = MinGRUCell.step(cp, x[:, t], s)
    return s


def batched_then_scan(cp, x, s):
    a, b = MinGRUCell._gates(cp, x)                                       # (P, T, D) each, all steps at once
    return linear_scan(a, b, s)


egg = standalone(EggCell, D, P)
Ts = book.setting([16, 64, 128], [16, 64, 256, 1024])
P_time = book.setting(32, 256)
timing = {k: [] for k in ("minGRU step loop", "minGRU batched + loop (npegg)", "minGRU batched + scan",
                         "egg cell")}
for T in Ts:
    x = rng.standard_normal((P_time, T, D)).astype(np.float32)
    s0 = rng.standard_normal((P_time, D)).astype(np.float32) * 0.5
    mg, eg = standalone(MinGRUCell, D, P_time), standalone(EggCell, D, P_time)
    res = interleaved([lambda: step_loop(mg, x, s0), lambda: MinGRUCell._forward(mg, x, s0),
                       lambda: batched_then_scan(mg, x, s0), lambda: EggCell._forward(eg, x, s0)],
                      book.setting(3, 5))
    for k, v in zip(timing, res):
        timing[k].append(v)
    print(f"P = {P_time}, D = {D}, T = {T:5d}: " + "   ".join(f"{k.replace('minGRU ', '').replace(' (npegg)', '')} "
                                                          f"{v * 1e3:7.1f} ms" for k, v in zip(timing, res)))

if plt:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, style in zip(timing, ("o-", "s-", "^-", "x--")):
        ax.loglog(Ts, np.array(timing[k]) * 1e3, style, label=k)
    ax.set_xlabel("chunk length T (steps)")
    ax.set_ylabel("ms per chunk (median)")
    ax.set_title(f"One recurrent cell over T steps, P = {P_time} members, D = {D}", fontsize=10)
    ax.legend(fontsize=8)
    book.save(fig, "06_scan_vs_loop.png")

# %% [markdown]
# Read the numbers before the slogan (those of the full setting; small settings are too short to
# time reliably). On two CPU cores under NumPy the parallel scan is the **slowest** way to run the
# minGRU: about as fast as the loops for short chunks, and 2–3 times slower than them at
# $T = 1024$. It does $\lceil\log_2 T\rceil$ passes over the whole $(P, T, D)$ array — $O(T \log T)$ work
# and memory traffic — where a loop does $O(T)$ work in $T$ cheap vectorised steps. Batching the
# projections, which the input-only gates allow, helps a little for short chunks and not at all
# for long ones: one $(256, 64) \times (64, 64)$ matmul per step is cheap, and at $T = 1024$ the
# $(P, T, D)$ gate arrays (64 MB each) no longer fit in any cache. And nano-egg's cell, with its
# two extra state matmuls per step, costs only 1.2–1.8 times the minGRU's loops.
#
# So "no Python loop over time" is not, by itself, speed. The scan's real advantage is its
# *depth*: $\log_2 T$ dependent steps instead of $T$. That pays on hardware with thousands of
# parallel lanes (a GPU, where the reference runs), not here — so npegg's minGRU forward batches the
# projections and then runs the loop. What the minGRU's input-only gates
# buy on any hardware is that property — and what they cost is expressiveness: nano-egg's gate
# sees the state, the minGRU's does not. The training run below puts both to work.
#
# ## 4. A short ES training run
#
# npegg's training loop (`npegg.program.loop`, the same code as the `npegg train` command) does what
# nano-egg does: each member of the population reads `tokens_per_update` consecutive bytes of its
# own training stream per epoch, continuing from its own hidden state; antithetic partners share
# the bytes (`group_size` 2); the fitness is the log-likelihood of the bytes; EggRoll turns the
# fitnesses into an update, here with Adam. The public API is three calls: a `TrainConfig`,
# `make_run(config, corpus)`, and `train(run, history)`, which validates on schedule and reports
# each epoch through a callback.
#
# We train both cells with the same settings on a corpus of the first 40 documents of the
# shipped corpus (the small setting: the first 12), and score them on the whole validation
# split — against the baselines of *those* validation bytes.

# %%
train_corpus = load_corpus(None, max_docs=book.setting(12, 40))
train_base = baselines(train_corpus.train, train_corpus.valid)
print(train_corpus.description)
print("baselines on its validation bytes:", {k: round(v, 3) for k, v in train_base.items()})

settings = dict(hidden_dim=book.setting(16, 32), n_layers=1, pop_size=book.setting(64, 256),
                tokens_per_update=book.setting(32, 64), epochs=book.setting(30, 300), lr=0.02, sigma=0.03,
                optimizer="adam", group_size=2, sample_bytes=0,
                mlp_ratio=4, direct_path=False, embedding_update="all")   # the model of section 1
histories, runs, seconds = {}, {}, {}
for cell in ("egg", "mingru"):
    cfg = TrainConfig(cell=cell, eval_every=max(1, settings["epochs"] // 10), **settings).resolved()
    cfg.validate()
    run = make_run(cfg, train_corpus)
    t0 = time.perf_counter()
    histories[cell] = train(run, History.empty())
    seconds[cell] = time.perf_counter() - t0
    runs[cell] = run
    h = histories[cell]
    valid = [v for v in h.valid_bpb if np.isfinite(v)]
    print(f"{cell:6s}: {cfg.epochs} epochs in {seconds[cell]:.0f} s; validation bpb {valid[0]:.3f} → {valid[-1]:.3f}")

# %%
if plt:
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for cell, color in (("egg", "C0"), ("mingru", "C1")):
        h = histories[cell]
        ep, tr, va = np.array(h.epoch), np.array(h.train_bpb), np.array(h.valid_bpb)
        ax.plot(ep, tr, color=color, lw=0.6, alpha=0.5, label=f"{cell}: train (population)")
        ok = np.isfinite(va)
        ax.plot(ep[ok], va[ok], "o-", color=color, ms=3, label=f"{cell}: validation")
    for name, ls, va in (("unigram", "-.", "center"), ("bigram", ":", "center"), ("gzip", "--", "bottom"),
                         ("lzma", "--", "top")):
        ax.axhline(train_base[name], color="gray", lw=0.8, ls=ls)
        ax.text(settings["epochs"], train_base[name], f" {name}", va=va, fontsize=7, color="gray")
    ax.set_ylim(top=9)
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per byte")
    ax.set_title("ES-trained byte LMs on stdlib source, against the baselines", fontsize=10)
    ax.legend(fontsize=7)
    book.save(fig, "06_learning_curve.png")

# %% [markdown]
# Where did we land? In the full setting (300 epochs) both cells go from about 8.8 bits per byte
# — worse than uniform, as a random initialisation is — to about 4.1 (egg 4.14, minGRU 4.07):
# **below the unigram baseline** (4.44), not below the bigram one (3.42), and far from gzip and
# lzma (1.96, 1.88). The curves flatten in the second half: this is the honest state of a
# 1-layer, 32-wide model trained by ES for under a minute on a CPU (the times are printed above). `npegg train` with its
# defaults (printed below, read from `TrainConfig`) goes further. The two cells learn at about
# the same rate here; the egg cell, with its loop over time, takes longer per epoch (the times
# are printed above).
#
# And what does such a model write? Samples, continuing a prompt at temperature 0.8
# (`npegg.program.evaluate.sample_bytes`; randomness from a key, never a global stream):

# %%
final_bpb = {cell: [v for v in histories[cell].valid_bpb if np.isfinite(v)][-1] for cell in histories}
# the full setting's numbers, quoted above (one seeded run each; re-running gives the same bits)
book.check("egg final validation bpb", final_bpb["egg"], 4.14, 0.02, full_only=True)
book.check("minGRU final validation bpb", final_bpb["mingru"], 4.07, 0.02, full_only=True)
for name, value in (("unigram", 4.44), ("bigram", 3.42), ("gzip", 1.96), ("lzma", 1.88)):
    book.check(f"{name} baseline on the training run's validation bytes", train_base[name], value, 0.005, full_only=True)
if not book.SMALL:
    assert all(train_base["bigram"] < v < train_base["unigram"] for v in final_bpb.values())
defaults = TrainConfig()
print(f"npegg train defaults (TrainConfig): {defaults.n_layers} layers of width {defaults.hidden_dim}, "
      f"{defaults.cell} cell, population {defaults.pop_size}, {defaults.tokens_per_update} bytes per member "
      f"per epoch, {defaults.epochs} epochs, {defaults.optimizer} at lr {defaults.lr} ({defaults.lr_schedule}), "
      f"sigma {defaults.sigma}")

# %%
for cell, run in runs.items():
    text = sample_bytes(run.logits_fn, b"def ", book.setting(80, 300), temperature=0.8, seed=1)
    print(f"--- {cell} ---")
    print("def " + text.decode("utf-8", errors="replace"))

# %% [markdown]
# Python-shaped noise: the models have learned which bytes are common, that spaces come in runs
# of indentation after newlines, and fragments like `_`, `.`, `(`, `==` and `self`-like letter
# runs — about what a model between the unigram and the bigram baseline should know.
#
# ## 5. A bigger population or more epochs?
#
# Chapter 1 predicted that, while the population is far below the number of parameters, the
# total number of evaluations needed for a given improvement hardly depends on how they are
# split between population and epochs — and that a larger population then buys the same progress
# in fewer, parallelisable steps. On the language model the cost of an epoch is proportional to
# $P$ (every member reads `tokens_per_update` bytes), so fix the budget $P \times \text{epochs}$ and
# vary the split:

# %%
budget = book.setting(16 * 48, 256 * 80)                    # members × epochs, i.e. forward passes per byte slot
splits = book.setting([16, 64], [64, 128, 256, 512])
split_bpb, split_seconds = {}, {}
for P_s in splits:
    epochs_s = budget // P_s
    cfg = TrainConfig(cell="mingru", eval_every=epochs_s,
                      **{**settings, "pop_size": P_s, "epochs": epochs_s}).resolved()
    cfg.validate()
    run_s = make_run(cfg, train_corpus)
    t0 = time.perf_counter()
    h = train(run_s, History.empty())
    split_seconds[P_s] = time.perf_counter() - t0
    split_bpb[P_s] = [v for v in h.valid_bpb if np.isfinite(v)][-1]
    print(f"population {P_s:4d} x {epochs_s:4d} epochs: validation bpb {split_bpb[P_s]:.3f}  ({split_seconds[P_s]:.0f} s)")
n_lm_params = sum(np.size(v) for v in flatten(run_s.params).values())
print(f"the model has {n_lm_params:,} parameters: every population here is far below that")
assert max(splits) // 2 < n_lm_params / 10
spread = max(split_bpb.values()) - min(split_bpb.values())
print(f"spread of the final bpb across the splits: {spread:.3f} bits")
for P_s, value in ((64, 4.525), (128, 4.753), (256, 5.240), (512, 5.888)):   # quoted below (seeded runs)
    book.check(f"equal compute: final bpb at population {P_s}", split_bpb.get(P_s, value), value, 0.01, full_only=True)

# %% [markdown]
# The model has tens of thousands of parameters and every population is at most a few hundred:
# deep in the $d \gg N$ regime. Yet at equal compute the splits are far from equal. In the full
# setting the *smallest* population wins clearly: 4.53 bits per byte at 64 members × 320 epochs,
# 4.75 at 128 × 160, 5.24 at 256 × 80 and 5.89 at 512 × 40.
#
# This does not contradict chapter 1; it shows which assumption matters. Chapter 1's argument
# used the step size that is best for each $N$, $\alpha^\star = N/(N+d+1)$, which *grows* with the
# population: a better direction earns a longer step. Adam with a fixed learning rate does not
# do that. It moves every coordinate by about lr per step whatever the population (chapter 2),
# so a larger population buys a better direction but not a longer step, and eight times fewer
# epochs means eight times fewer steps of the same length. To turn a large population into fewer
# sequential steps — the point of hyperscale ES — the learning rate has to grow with it, up to the
# point where the estimate's direction stops improving ($N$ approaching $d$). Exercise 4 below
# explores that on chapter 1's quadratic.
#
# ### A large population with a scaled learning rate
#
# Hyperscale ES is the other comparison: on parallel hardware a generation of $P$ members costs
# about as much *time* as a generation of a few, so what counts is the number of sequential
# epochs. Fix the epochs at the largest population's (40 in the full setting) and compare the
# smallest population with the largest, at the learning rate above and at that rate scaled by
# $\sqrt{P/P_{\min}}$ (the growth of the signal-to-noise ratio of one estimate, chapter 2):

# %%
P_lo, P_hi = min(splits), max(splits)
epochs_eq = budget // P_hi
lr_scaled = settings["lr"] * math.sqrt(P_hi / P_lo)
equal_epochs = {}
for label, P_s, lr_s in ((f"P = {P_lo}, lr {settings['lr']}", P_lo, settings["lr"]),
                         (f"P = {P_hi}, lr {settings['lr']}", P_hi, settings["lr"]),
                         (f"P = {P_hi}, lr {lr_scaled:.4f} (x sqrt({P_hi}/{P_lo}))", P_hi, lr_scaled)):
    if P_s == P_hi and lr_s == settings["lr"]:
        equal_epochs[label] = split_bpb[P_hi]                         # already trained above
    else:
        cfg = TrainConfig(cell="mingru", eval_every=epochs_eq,
                          **{**settings, "pop_size": P_s, "epochs": epochs_eq, "lr": lr_s}).resolved()
        cfg.validate()
        equal_epochs[label] = [v for v in train(make_run(cfg, train_corpus), History.empty()).valid_bpb
                               if np.isfinite(v)][-1]
    print(f"{epochs_eq} epochs, {label:38s}: validation bpb {equal_epochs[label]:.3f}")
lo_bpb, hi_bpb, hi_scaled_bpb = equal_epochs.values()
assert hi_scaled_bpb < hi_bpb < lo_bpb                               # the ordering the text states, any setting
for name, value, quoted in (("small population", lo_bpb, 6.899), ("large population, same lr", hi_bpb, 5.888),
                            ("large population, scaled lr", hi_scaled_bpb, 5.021)):
    book.check(f"equal epochs: {name}", value, quoted, 0.01, full_only=True)   # seeded runs

# %% [markdown]
# At equal epochs the large population wins, and wins more with the scaled learning rate: in the
# full setting 6.90 bits per byte for 64 members × 40 epochs, 5.89 for 512 members at the same
# learning rate, **5.02 for 512 members with the learning rate scaled by $\sqrt 8$**. Eight times the
# forward passes per epoch, spread over eight times the hardware, buy nearly two bits per byte
# in the same number of sequential steps. (At equal *compute* the 64-member run with 320 epochs
# is still better, 4.53: on one CPU, more steps beat more members; on a GPU cluster the
# members are nearly free and the steps are not.)
#
# ## Summary
#
# - Bits per byte is a code length: 8 for knowing nothing, and on the same scale as a compressor's
#   output. Compare models only with baselines measured on the same bytes.
# - nano-egg's cell reads the state in its gate, so it runs step by step; the minGRU's gates read
#   only the input, so its recurrence is a linear scan with $\log_2 T$ depth. In NumPy on a CPU the
#   $O(T \log T)$ scan is slower than an $O(T)$ loop; its depth pays on parallel hardware.
# - Trained by ES for under a minute per cell, both models beat the unigram baseline on held-out
#   bytes, and neither reaches the bigram.
# - At a fixed budget of member-epochs and a fixed Adam learning rate, more epochs beat a larger
#   population: Adam's step length does not grow with the population, so a large population pays
#   off only with a learning rate scaled up with it (chapter 1's optimal step). At a fixed number
#   of epochs — what parallel hardware makes the real cost — a population 8× larger with the
#   learning rate scaled by $\sqrt 8$ wins by nearly two bits per byte.
#
# ## Exercises
#
# Solutions, checked by the test suite: `tutorials/solutions/06_byte_language_model.py`.
#
# 1. **Associativity, and a chunked scan.** Check numerically that the composition
#    $(a_1,b_1)\bullet(a_2,b_2) = (a_1a_2,\,a_2b_1+b_2)$ is associative. Then use it to run the
#    recurrence in chunks: scan each chunk of 16 steps from $h=0$, and fix the chunks up with the
#    carried state and the chunk's cumulative product of $a$. Compare with `linear_scan_loop`.
# 2. **Smoothing the bigram.** The bigram baseline adds 1 to every count. Compute its bits per
#    byte with add-$k$ smoothing for $k \in \{0.01, 0.1, 0.3, 1\}$ on the first 40 documents of the shipped corpus,
#    check that $k=1$ reproduces `npegg.program.baselines`, and find which $k$ is best.
# 3. **Entropy is the floor for unigrams.** Show that no unigram model (one fixed distribution
#    $q$ over bytes) can score below the empirical entropy $H = -\sum_b \hat p_b\log_2\hat p_b$ of the
#    validation bytes' own frequencies $\hat p$ (Gibbs' inequality), and check it against the
#    unigram baseline.
# 4. **Scale the step with the population.** Redo chapter 1's quadratic experiment (section 5)
#    with a *fixed* step $\alpha$ instead of $\alpha^\star$, at equal evaluations: $N = 4$ pairs for
#    400 steps against $N = 64$ for 25 steps, $d = 1000$. Which wins with a fixed $\alpha$, and which
#    with $\alpha^\star(N)$?
#
# **Next**, chapter 7 throws away floating point altogether: the same kind of model with int8
# weights and activations, integer layer norm and an integer log-likelihood.

# %%
book.finish(FIGURES)
