# %% [markdown]
# # Chapter 10 — ES across machines: seeds and scalars
#
# Hyperscale means a population far larger than one computer can evaluate: the paper trains with
# up to $2^{20}$ members per generation (arXiv:2511.16652v2, section 6.1). This chapter is about
# spreading a population over many workers — processes on a laptop, or machines in a cluster —
# and why ES is unusually good at it.
#
# **What you will learn.**
#
# 1. **What has to cross the wire.** Data-parallel backprop exchanges a whole gradient, $d$
#    floats, every step. ES exchanges the $P$ fitness scores of a generation and nothing else,
#    because every worker can rebuild every member's noise from (seed, leaf, epoch, member).
# 2. **What each worker holds**, and how much memory that is.
# 3. **Sharding from scratch**: worker processes evaluate their share of the members, the scores
#    are gathered, every worker applies the same update — bytes counted on the pipe, and the
#    result checked bit for bit against the one-process run.
# 4. **npegg's engines** (`npegg train --workers N`, `--engine local|ray`) run for real: speedup,
#    bytes per epoch, identical bits.
# 5. **On paper**: epoch time for 1 to 1024 workers at populations up to $2^{20}$, from the
#    measured cost of a member and of the update; where communication, and where the update,
#    start to dominate.
#
# **Run it**: `python tutorials/10_es_across_machines.py` (or open it as a notebook).
# `NPEGG_TUTORIAL_SMALL=1` runs small models in seconds. Speeds are measured on whatever machine
# runs the chapter (the book's was 2 cores shared with other jobs), so they move from run to run;
# the byte counts and the bit-identity do not.

# %%
import ast
import hashlib
import importlib.util
import inspect
import os
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np

import _book as book
from npegg.program.config import TrainConfig
from npegg.program.runs import FloatRun, make_run
from npegg.tree import flatten

SMALL = book.choose_setting(None)  # None: NPEGG_TUTORIAL_SMALL decides; True = small (seconds), False = full
FIGURES = ["10_bytes_per_step.png", "10_sharding.png", "10_epoch_time.png"]
plt = book.pyplot()

# %% [markdown]
# ## 1. What crosses the wire
#
# **Data-parallel backprop.** $W$ workers hold a copy of the model each, compute the gradient of
# their own slice of the batch, and must then *average the gradients* before anyone can step:
# an **all-reduce** of $d$ numbers. The gradient itself is $4d$ bytes (float32); the usual ring
# all-reduce sends, and receives, $2\,\frac{W-1}{W}\cdot 4d$ bytes per worker per step (half of it
# to add the workers' gradients up, half to hand the sum back): about **8 bytes per parameter**,
# however many workers there are.
#
# **ES.** A generation's update is $\Delta\theta \propto \sum_{m} f_m\,\varepsilon_m$. The
# fitnesses $f_m$ are $P$ numbers. The noise $\varepsilon_m$ is as large as the model, *but nobody
# needs to send it*: in npegg (chapter 4) it is a pure function of (seed, leaf, epoch, member), so
# any process that knows the seed rebuilds any member's noise exactly. What crosses is the $P$
# scores — a few kilobytes per generation, independent of the model's size.
#
# For `npegg train`'s population ($P = 1024$) with a ByteLM of width 64, two layers and an MLP 4D
# in each (116,224 parameters; `npegg train`'s default model, width 32 with a direct path, has
# 86 k, which only makes the point sharper), and for a model of a billion parameters:

# %%
default_cfg = replace(TrainConfig(), hidden_dim=64, mlp_ratio=4, direct_path=False).resolved()
default_run = FloatRun(default_cfg)                       # that ByteLM (no data needed)
d_default = sum(v.size for v in flatten(default_run.state.params).values())


def allreduce_bytes(d, W):
    """Ring all-reduce of d float32 per worker: 2(W−1)/W · 4d bytes sent (and as many received)."""
    return 2 * (W - 1) / W * 4 * d


def es_bytes(P, W):
    """Per worker per epoch with a coordinator: its P/W scores up, all P scores down (float64)."""
    return 8 * P / W + 8 * P


print(f"the D=64 ByteLM: d = {d_default:,} parameters, population P = {default_cfg.pop_size}")
print(f"{'model':28s} {'W':>5s} {'backprop bytes/step/worker':>27s} {'ES bytes/epoch/worker':>22s} {'ratio':>8s}")
for name, d, P in (("ByteLM D=64, L=2, MLP 4D", d_default, default_cfg.pop_size), ("1e9 parameters, P = 2^20", 10**9, 2**20)):
    for W in (8, 1024):
        bp, es_b = allreduce_bytes(d, W), es_bytes(P, W)
        print(f"{name:28s} {W:5d} {bp:27,.0f} {es_b:22,.0f} {bp / es_b:8.1f}")
book.check("default ByteLM parameter count", d_default, 116_224, 0)
ratio_default = allreduce_bytes(d_default, 8) / es_bytes(default_cfg.pop_size, 8)
book.check("backprop's bytes over ES's, default model, W = 8", ratio_default, 88, 0.5)      # exact arithmetic
book.check("all-reduce of 1e9 parameters, W = 1024 (GB)", allreduce_bytes(10**9, 1024) / 1e9, 8, 0.05)
book.check("ES bytes at P = 2^20, W = 1024 (MB)", es_bytes(2**20, 1024) / 1e6, 8.4, 0.05)

if plt:
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ds = np.logspace(4, 11, 50)
    ax.loglog(ds, allreduce_bytes(ds, 64), label="backprop: all-reduce of d float32 (W = 64)")
    for P in (2**10, 2**20):
        ax.loglog(ds, np.full_like(ds, es_bytes(P, 64)), "--", label=f"ES: P = 2^{int(np.log2(P))} scores (W = 64)")
    ax.axvline(d_default, color="gray", lw=0.8, ls=":")
    ax.text(d_default, 1e3, " npegg default", fontsize=7, color="gray")
    ax.set(xlabel="model parameters d", ylabel="bytes per worker per step / epoch",
           title="What crosses the wire")
    ax.legend(fontsize=7)
    book.save(fig, "10_bytes_per_step.png")

# %% [markdown]
# Even for this small model backprop's all-reduce is 88 times ES's message (at $W = 8$);
# for a billion-parameter model backprop moves 8 GB per worker per step where ES moves 8.4 MB —
# and ES's bytes do not grow with the model at all. (The comparison is per *step*; chapter 11 is
# about how many more steps, and forward passes, ES needs.)
#
# ### Why the noise never has to travel
#
# The whole trick is that noise is not a *stream* of random numbers (where member 7's noise
# depends on having drawn members 0–6 first) but a *function*. NumPy can do this with no library
# at all: a generator seeded with the tuple (seed, leaf, epoch, member). Rebuilt alone, in any
# order, in any process, a member's noise is the same bits:

# %%
def member_noise(seed, leaf, epoch, member, size):
    """ε of one member for one parameter leaf: a pure function of (seed, leaf, epoch, member)."""
    return np.random.default_rng([seed, leaf, epoch, member]).standard_normal(size)


P_demo, size = 16, 1000
population = np.stack([member_noise(7, 3, 5, m, size) for m in range(P_demo)])       # (P, size), in order
order = np.random.default_rng(0).permutation(P_demo)
rebuilt = {m: member_noise(7, 3, 5, int(m), size) for m in order}                     # shuffled, one at a time
same = all(np.array_equal(rebuilt[m], population[m]) for m in range(P_demo))
print(f"{P_demo} members rebuilt alone in the order {order[:6].tolist()}...: identical bits = {same}")
assert same

# %% [markdown]
# npegg does the same with a shared table (chapter 4, `npegg/noise.py`): a member's noise for a
# leaf is a slice of a fixed 32 MiB table built from the seed, and where the slice starts is an
# integer hash of (the leaf's threefry key folded with the epoch, the member). The consequence for a cluster: **a worker needs
# the seed once, and the scores every epoch.** Everything else it computes itself.
#
# ## 2. What each worker holds
#
# Salimans et al. (2017, Algorithm 2), nano-egg and npegg all keep the parameters in step the
# same way: every worker holds a full *replica* — parameters, optimizer state, epoch — evaluates
# its own members, receives all $P$ scores, and applies **the same update** itself. The update is
# the same computation on the same inputs, so the replicas stay equal bit for bit, and the
# parameters never travel after the start. Per worker, for the D=64 model:

# %%
P_def, W_ex = default_cfg.pop_size, 8
noise_table = default_run.es.frozen_noiser_params["noise"].table
mem = {"parameters (float32)": 4 * d_default,
       "Adam state m, v (float32)": 2 * 4 * d_default,
       "shared noise table (chapter 4)": noise_table.nbytes,
       "its cache of noise slices (at most; changes no value)": default_run.es.frozen_noiser_params["noise"].cache_bytes,
       f"carried states of its P/W = {P_def // W_ex} members (P/W·L·D·4)":
           P_def // W_ex * default_cfg.n_layers * default_cfg.hidden_dim * 4}
for k, v in mem.items():
    print(f"  {k:52s} {v / 2**20:8.2f} MiB")
print(f"  {'total (plus one member chunk of activations)':52s} {sum(mem.values()) / 2**20:8.2f} MiB")
book.check("the noise table (MiB)", noise_table.nbytes / 2**20, 32, 0)

# %% [markdown]
# The noise table and its cache dominate, and they are the same for any model (threefry keys
# index into the table; the cache keeps slices a forward over $T$ steps reads again, and could be
# made smaller at the price of rebuilding them). The parameters and Adam state are 12 bytes per
# parameter; nothing in the list grows with the
# population except the carried states of the worker's *own* members. A billion-parameter model
# would need 12 GB per replica; the population adds only what each worker evaluates.
#
# ## 3. Sharding a population from scratch
#
# A toy, so that every line is visible: a one-hidden-layer classifier of 16 inputs into 4
# classes, trained by antithetic OpenES (full-rank noise, z-scored fitness) on the mean
# log-likelihood of a batch that changes each epoch. The data, the batch of each epoch, the
# initial parameters and every member's noise are all rebuilt from the seed. Four functions, and a
# fifth that is a worker's whole life:

# %%
TOY = dict(seed=10, n_data=4096, batch=book.setting(512, 1024), inputs=16, hidden=64, classes=4,
           pop=book.setting(128, 512), epochs=book.setting(8, 30), sigma=0.05, lr=0.05)


def toy_setup(cfg):
    """The data and θ₀ from the seed alone: every process computes the same arrays."""
    rng = np.random.default_rng([cfg["seed"], 0])
    X = rng.standard_normal((cfg["n_data"], cfg["inputs"]))                         # (n, I)
    teacher = rng.standard_normal((cfg["inputs"], cfg["classes"]))                  # (I, C)
    y = np.argmax(np.tanh(X) @ teacher, axis=1)                                     # (n,) labels
    d = cfg["inputs"] * cfg["hidden"] + cfg["hidden"] * cfg["classes"]
    return X, y, 0.1 * rng.standard_normal(d)                                       # θ₀ (d,)


def toy_noise(cfg, epoch, member, d):
    """ε_m from (seed, leaf 0, epoch, pair): members 2k and 2k+1 are antithetic (+ε, −ε)."""
    e = np.random.default_rng([cfg["seed"], 0, epoch, member // 2]).standard_normal(d)
    return e if member % 2 == 0 else -e


def toy_fitness(cfg, X, y, theta, epoch, members):
    """Mean log-likelihood of the epoch's batch under θ + σε_m, for each member: (n,).

    One member at a time, so that a member's score is the same bits whichever shard holds it
    (a batched matmul over members may round differently for another number of rows)."""
    batch = np.random.default_rng([cfg["seed"], 1, epoch]).choice(len(X), cfg["batch"], replace=False)
    xb, yb = X[batch], y[batch]                                                     # (B, I), (B,)
    cut = cfg["inputs"] * cfg["hidden"]
    out = []
    for m in members:
        th = theta + cfg["sigma"] * toy_noise(cfg, epoch, m, theta.size)            # (d,)
        hidden = np.tanh(xb @ th[:cut].reshape(cfg["inputs"], cfg["hidden"]))       # (B, H)
        logits = hidden @ th[cut:].reshape(cfg["hidden"], cfg["classes"])           # (B, C)
        logits = logits - logits.max(axis=1, keepdims=True)
        logp = logits[np.arange(len(yb)), yb] - np.log(np.exp(logits).sum(axis=1))  # (B,)
        out.append(logp.mean())
    return np.array(out)


def toy_update(cfg, theta, scores, epoch):
    """θ ← θ + lr/(Pσ) Σ_m z_m ε_m with z the z-scored scores, every ε rebuilt from its seed,
    summed pair by pair in a fixed order (so every replica gets the same bits)."""
    z = (scores - scores.mean()) / (scores.std() + 1e-12)                           # (P,)
    step = np.zeros_like(theta)
    for k in range(len(scores) // 2):
        step += (z[2 * k] - z[2 * k + 1]) * toy_noise(cfg, epoch, 2 * k, theta.size)
    return theta + cfg["lr"] / (len(scores) * cfg["sigma"]) * step


def toy_serve(cfg, lo, hi):
    """A worker: owns members lo..hi−1. Per epoch: its scores out, all P scores in, update. At the
    end, the sha256 of its θ. Everything crosses stdin/stdout as raw float64 bytes."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    X, y, theta = toy_setup(cfg)
    for epoch in range(cfg["epochs"]):
        out.write(toy_fitness(cfg, X, y, theta, epoch, range(lo, hi)).tobytes())
        out.flush()
        scores = np.frombuffer(inp.read(8 * cfg["pop"]), dtype=np.float64)          # (P,)
        theta = toy_update(cfg, theta, scores, epoch)
    out.write(hashlib.sha256(theta.tobytes()).digest())
    out.flush()


# %% [markdown]
# First the reference: one process, every member, epoch after epoch.

# %%
def toy_one_process(cfg):
    X, y, theta = toy_setup(cfg)
    for epoch in range(cfg["epochs"]):
        theta = toy_update(cfg, theta, toy_fitness(cfg, X, y, theta, epoch, range(cfg["pop"])), epoch)
    return theta


t0 = time.perf_counter()
theta_ref = toy_one_process(TOY)
t_one = time.perf_counter() - t0
X_toy, y_toy, theta_init = toy_setup(TOY)
print(f"toy: d = {theta_init.size:,} parameters, P = {TOY['pop']}, {TOY['epochs']} epochs in {t_one:.2f} s; "
      f"mean log-likelihood {toy_fitness({**TOY, 'sigma': 0.0}, X_toy, y_toy, theta_init, 0, [0])[0]:.3f} → "
      f"{toy_fitness({**TOY, 'sigma': 0.0}, X_toy, y_toy, theta_ref, 0, [0])[0]:.3f}")

# %% [markdown]
# Now the same over $W$ worker processes. The worker's program is *the source of the functions
# above* (`inspect.getsource`), sent once when the process starts — a deployment, not a message
# per epoch. The coordinator owns no parameters at all: it reads each worker's scores, joins
# them, writes all $P$ to every worker, and counts every byte. Shards are cut on even member
# numbers, so antithetic partners stay together.

# %%
WORKER_PROGRAM = "\n".join(["import hashlib, sys", "import numpy as np", f"CFG = {TOY!r}"]
                           + [inspect.getsource(f) for f in (toy_setup, toy_noise, toy_fitness, toy_update, toy_serve)]
                           + ["toy_serve(CFG, int(sys.argv[1]), int(sys.argv[2]))"])


def toy_sharded(cfg, W):
    """Run cfg over W worker processes → (worker digests, bytes up, bytes down, seconds, seconds per epoch)."""
    P = cfg["pop"]
    cuts = [2 * (w * (P // 2) // W) for w in range(W + 1)]                          # even boundaries
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER_PROGRAM, str(cuts[w]), str(cuts[w + 1])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env) for w in range(W)]
    up = down = 0
    try:
        for epoch in range(cfg["epochs"]):
            parts = [p.stdout.read(8 * (cuts[w + 1] - cuts[w])) for w, p in enumerate(procs)]  # gather
            if any(len(x) != 8 * (cuts[w + 1] - cuts[w]) for w, x in enumerate(parts)):
                raise RuntimeError(f"a worker stopped at epoch {epoch} (its error is printed above)")
            if epoch == 0:
                t_first = time.perf_counter()                                       # start-up + epoch 0
            scores = b"".join(parts)                                                # (P,) float64 bytes
            up += sum(len(x) for x in parts)
            for p in procs:                                                         # broadcast
                p.stdin.write(scores)
                p.stdin.flush()
                down += len(scores)
        digests = [p.stdout.read(32) for p in procs]
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)
    seconds = time.perf_counter() - t0
    return digests, up, down, seconds, (seconds - (t_first - t0)) / max(cfg["epochs"] - 1, 1)


ref_digest = hashlib.sha256(theta_ref.tobytes()).digest()
toy_rows = []
for W in book.setting((1, 2), (1, 2, 4)):
    digests, up, down, seconds, per_epoch = toy_sharded(TOY, W)
    identical = all(dg == ref_digest for dg in digests)
    toy_rows.append((W, seconds, per_epoch, up, down, identical))
    print(f"W = {W}: {seconds:5.2f} s ({per_epoch * 1e3:6.1f} ms per epoch after the first); "
          f"bytes per epoch: up {up // TOY['epochs']:,}, down {down // TOY['epochs']:,} "
          f"(= 8·P/W per worker up, 8·P per worker down); every replica's θ identical to one process: {identical}")
    assert identical, "a worker's parameters differ from the one-process run"
    assert up == 8 * TOY["pop"] * TOY["epochs"] and down == 8 * TOY["pop"] * W * TOY["epochs"]
assert 8 * TOY["pop"] < 8 * theta_init.size           # the scores are smaller than one copy of θ
toy_speedup = toy_rows[0][2] / toy_rows[1][2]
print(f"one process (no pipes): {t_one / TOY['epochs'] * 1e3:.1f} ms per epoch; "
      f"speedup of 2 workers over 1 (steady epochs): {toy_speedup:.2f}× on {os.cpu_count()} cores")

if plt:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    Ws = [r[0] for r in toy_rows]
    ax.bar([str(w) for w in Ws], [r[2] * 1e3 for r in toy_rows], color="C0")
    ax.axhline(t_one / TOY["epochs"] * 1e3, color="k", ls=":", lw=1, label="one process, no pipes")
    ax.set(xlabel=f"worker processes ({os.cpu_count()} cores here)", ylabel="ms per epoch",
           title=f"The toy sharded: P = {TOY['pop']}, {8 * TOY['pop']:,} bytes down per worker per epoch")
    ax.legend(fontsize=8)
    book.save(fig, "10_sharding.png")

# %% [markdown]
# Three things to take from this.
#
# * **Bits.** Every worker's final $\theta$ hashes to the one-process run's, for any $W$. Nothing
#   was averaged in a different order: each score was computed alone, and each replica summed
#   the same $P$ scores in the same order. (Exercise 2 shows what goes wrong if workers send
#   partial sums instead.)
# * **Bytes.** Per epoch each worker sent $8P/W$ bytes and received $8P$: for this toy's
#   thousand-odd parameters that is already less than one copy of $\theta$, and it would be the
#   same for a model a million times larger.
# * **Speed.** Each worker evaluates $P/W$ members, so with a free core per worker the evaluation
#   time divides by $W$. But $W$ processes run only as fast as the cores they get: past the number
#   of cores they take turns, and on a machine busy with other jobs (the book's was; the times
#   above are what it gave) a second process may gain nothing. And look at what does *not*
#   shrink in any case: every replica rebuilds all $P$ noise vectors for the update. That is the
#   price of sending only scalars, and section 5 counts it.
#
# ## 4. npegg's engines
#
# npegg does the same for its real models (`npegg.parallel`): a population is cut into member
# chunks of a fixed size (so a member's score never depends on how many workers there are), the
# chunks are dealt to workers, each worker holds a replica and returns only its scores, every
# replica applies the same update, and each reply carries a digest of the replica's state so that
# a replica that drifted is caught at once. `npegg train --workers N` runs worker processes on
# this machine (`--engine local`, the default, using every core); `--engine ray` puts the same
# replicas in Ray actors on a cluster (the repository's README gives the `ray start` commands). The
# library does the same for any model: `es.train(state, fitness, epochs, workers=N)` with a
# picklable `fitness(es, state, members)` — a module-level function or class, since a spawned
# worker imports it — as `python examples/regression.py --workers 2` shows. The next cell runs
# the language model for a few epochs with one worker and with two (and, in the full setting,
# with two Ray actors when Ray is installed), and compares the bits.

# %%
HAVE_ENGINES = importlib.util.find_spec("npegg.parallel") is not None
HAVE_RAY = importlib.util.find_spec("ray") is not None
engine_cfg = replace(default_cfg, **book.setting(dict(hidden_dim=32, n_layers=1, pop_size=256, tokens_per_update=50),
                                                 {}), epochs=book.setting(4, 8), sample_bytes=0,
                     max_docs=book.setting(20, None))
engine_rows = {}


def engine_run(cfg_fields, workers, engine):
    """Train a TrainConfig for its epochs over `workers` workers of `engine` →
    (parameters' digest, seconds per epoch after the first, bytes up and down per epoch)."""
    from npegg.parallel import tree_digest
    from npegg.program.data import load_corpus
    from npegg.program.shard import ParallelRun
    from npegg.program.config import TrainConfig
    from npegg.program.runs import make_run
    cfg = TrainConfig(**cfg_fields)
    corpus = load_corpus(None, max_docs=cfg.max_docs)
    run = ParallelRun(make_run(cfg, corpus), corpus.train, workers, engine)
    try:
        run.start()                                               # workers start before the clock
        eng = run.pop.engine
        up0, down0 = sum(eng.bytes_up), sum(eng.bytes_down)      # what starting them sent, left out
        run.epoch_step()                                          # one epoch to warm up
        t0 = time.perf_counter()
        for _ in range(cfg.epochs - 1):
            run.epoch_step()
        per_epoch = (time.perf_counter() - t0) / (cfg.epochs - 1)
        return (tree_digest(run.state.params), per_epoch, (sum(eng.bytes_up) - up0) / cfg.epochs,
                (sum(eng.bytes_down) - down0) / cfg.epochs)
    finally:
        run.close()


def engine_run_in_fresh_python(cfg, workers, engine):
    """engine_run in a new interpreter. Worker processes are *spawned* (started fresh, as on macOS
    and Windows): a spawned child re-imports the script that started it, and this chapter, run as
    a script, must not run again in every worker. So the driver is `python -c` (no script to re-import)."""
    from dataclasses import asdict
    program = "\n".join(["import time", "from npegg.program.blas import default_blas_threads",
                          "default_blas_threads()", inspect.getsource(engine_run),
                          f"print(repr(engine_run({asdict(cfg)!r}, {workers}, {engine!r})))"])
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the engine run failed:\n{out.stderr[-3000:]}")
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])      # a tuple of str and floats (chapter 9: never eval)


if not HAVE_ENGINES:
    print("npegg.parallel is not in this version of npegg: the engines are not measured here "
          "(sections 3 and 5 do not need them)")
else:
    plan = [(1, "local"), (2, "local")] + ([(2, "ray")] if HAVE_RAY and not SMALL else [])
    for workers, engine in plan:
        engine_rows[workers, engine] = engine_run_in_fresh_python(engine_cfg, workers, engine)
        dg, per_epoch, up, down = engine_rows[workers, engine]
        print(f"{engine:5s} engine, {workers} worker{'s' if workers > 1 else ' '}: {per_epoch:6.3f} s per epoch; "
              f"bytes per epoch: up {up:9,.0f}, down {down:9,.0f}; parameters' digest {dg[:16]}")
    if HAVE_RAY and SMALL:
        print("Ray is installed: the full setting runs the Ray engine too (starting Ray takes tens of seconds)")
    if not HAVE_RAY:
        print("Ray is not installed (pip install 'npegg[ray]'): the Ray engine is not measured here")
    digests = {dg for dg, *_ in engine_rows.values()}
    print(f"the same bits from every engine and worker count: {len(digests) == 1}")
    assert len(digests) == 1, "the engines disagree"
    engine_speedup = engine_rows[1, "local"][1] / engine_rows[2, "local"][1]
    P_e = engine_cfg.pop_size
    print(f"speedup of 2 local workers over 1: {engine_speedup:.2f}× "
          f"(P = {P_e}, D = {engine_cfg.hidden_dim}, L = {engine_cfg.n_layers}, T = {engine_cfg.tokens_per_update})")
    print(f"bytes per member per epoch with 2 workers: {(engine_rows[2, 'local'][2] + engine_rows[2, 'local'][3]) / P_e:.1f} "
          f"(the scores down to both workers, 8 bytes each, plus each worker's own scores and a digest up, plus pickling)")
    book.check("bytes per member per epoch, 2 local workers (counted)",
               (engine_rows[2, "local"][2] + engine_rows[2, "local"][3]) / P_e, 25, 3)
    # a timing: printed, never checked (it depends on the machine's load; the small setting's model
    # is too small for two processes to gain much over the messages; python -m benchmarks measures it)

# %% [markdown]
# The digests agree: the run's parameters are the same bits with one worker or two (and on Ray).
# The bytes per epoch are the scores and a digest per worker and request: a few kilobytes per
# worker, about 25 bytes per member in all, whatever the model. How close the speedup comes to 2 depends on how busy the machine is: other
# processes take their share from the workers. `python -m benchmarks` measures it at the
# `npegg train` defaults (its workers rows, `benchmarks/rows_parallel.py`, which also print a
# table on paper like the one below); run it on idle cores to see what two workers give.
#
# ## 5. On paper: 1 to 1024 workers, populations up to $2^{20}$
#
# One epoch with $W$ workers costs
#
# $$ t(P, W) = \Big\lceil \frac{P}{W} \Big\rceil t_{\text{member}} \;+\; t_{\text{update}}(P) \;+\; t_{\text{comm}}(P, W), $$
#
# * $t_{\text{member}}$: one member's forward over its $T$ bytes, measured below on the D=64 model;
# * $t_{\text{update}}(P) = u_0 + u_1 P$: the update, which **every replica does in full** (it rebuilds
#   all $P$ members' noise); measured at two populations and fitted;
# * $t_{\text{comm}}$: with a coordinator, as npegg and the toy do, its link carries the $P$ scores
#   to each of the $W$ workers, $8P(W + 1)$ bytes, plus a round trip: $2\alpha + 8P(W+1)/\beta$. We
#   *assume* a 10 Gb/s network, $\beta = 1.25$ GB/s, and $\alpha = 50\,\mu s$ latency.
#
# Each worker is assumed to be one core like this one's.

# %%
def time_forward(cfg, repeats):
    """Seconds per member of the perturbed forward over T bytes (the fastest of `repeats`: the
    machine is shared, and the minimum is the best estimate of the cost itself)."""
    run = FloatRun(cfg.resolved())
    P, T = cfg.pop_size, cfg.tokens_per_update
    x = np.random.default_rng(0).integers(1, 256, (P, T + 1))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run.es.forward(run.state, x[:, :-1], run.hidden, targets=x[:, 1:])
        times.append((time.perf_counter() - t0) / P)
    return min(times)


def time_update(cfg, repeats):
    """Seconds of one update (``es.step``) from P random scores: the update needs only the scores."""
    run = FloatRun(cfg.resolved())
    raw = np.random.default_rng(1).standard_normal(cfg.pop_size)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run.es.step(run.state, raw)
        times.append(time.perf_counter() - t0)
    return min(times)


P1, P2 = book.setting((64, 1024), (256, 4096))
t_member = time_forward(replace(default_cfg, pop_size=P1), 3)
t_upd1, t_upd2 = time_update(replace(default_cfg, pop_size=P1), 5), time_update(replace(default_cfg, pop_size=P2), 5)
u1 = max((t_upd2 - t_upd1) / (P2 - P1), 1e-9)
u0 = max(t_upd1 - u1 * P1, 0.0)
print(f"default model (D={default_cfg.hidden_dim}, L={default_cfg.n_layers}, T={default_cfg.tokens_per_update}): "
      f"forward {t_member * 1e3:.2f} ms per member; update {t_upd1 * 1e3:.1f} ms at P={P1}, {t_upd2 * 1e3:.1f} ms at P={P2} "
      f"→ u0 = {u0 * 1e3:.1f} ms + u1 = {u1 * 1e6:.1f} µs per member")
print(f"the update costs {u1 / t_member:.3f} of a member's forward per member (a rank-1 update touches each "
      f"weight once per member, the forward {default_cfg.tokens_per_update} times)")

ALPHA, BETA = 50e-6, 1.25e9


def epoch_time(P, W):
    """(compute, update, communication) seconds of one epoch (the formula above)."""
    comm = 0.0 if W == 1 else 2 * ALPHA + 8 * P * (W + 1) / BETA
    return -(-P // W) * t_member, u0 + u1 * P, comm


Ws = [1, 4, 16, 64, 256, 1024]
Ps = [2**10, 2**14, 2**18, 2**20]
print(f"\nepoch time in seconds (compute + update + communication); * = communication is the largest part, "
      f"† = the update is")
print("P \\ W   " + "".join(f"{W:>11d}" for W in Ws))
for P in Ps:
    cells = []
    for W in Ws:
        c, u, m = epoch_time(P, W)
        mark = "*" if m > max(c, u) else ("†" if u > max(c, m) else " ")
        cells.append(f"{c + u + m:10.3g}{mark}")
    print(f"2^{int(np.log2(P)):<6d}" + "".join(cells))

# where communication overtakes compute: 8P(W+1)/β > P·t_member/W  ⇔  W(W+1) > t_member·β/8
W_comm = float(np.sqrt(t_member * BETA / 8))
# where the replicated update overtakes compute: u1·P > P·t_member/W  ⇔  W > t_member/u1
W_update = t_member / u1
print(f"\ncommunication passes compute at W ≈ √(t_member·β/8) = {W_comm:.0f} workers (for any P); "
      f"the replicated update passes compute at W ≈ t_member/u1 = {W_update:.0f}")
book.check("8d for the default model (MB)", 8 * d_default / 1e6, 0.93, 0.005)

if plt:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    Wg = 2 ** np.arange(0, 11)
    for P, color in zip(Ps, ("C0", "C1", "C2", "C3")):
        parts = np.array([epoch_time(P, int(W)) for W in Wg])                       # (len, 3)
        ax.loglog(Wg, parts.sum(1), "o-", color=color, ms=3, label=f"P = 2^{int(np.log2(P))}")
        ax.loglog(Wg, parts[:, 0], ":", color=color, lw=0.8)
    ax.axvline(W_comm, color="gray", ls="--", lw=0.8)
    ax.text(W_comm, ax.get_ylim()[1] * 0.3, " link = compute", fontsize=7, color="gray")
    ax.set(xlabel="workers W", ylabel="seconds per epoch",
           title="Epoch time on paper (solid) and its compute part (dotted)")
    ax.legend(fontsize=8)
    book.save(fig, "10_epoch_time.png")

# %% [markdown]
# How to read the table. At $P = 2^{20}$ one core needs the first column's seconds per epoch;
# spreading it over workers divides the compute part almost perfectly, because the members are
# independent and the message is tiny. Two things stop the division:
#
# * **The coordinator's link.** It sends $8P$ bytes to each of $W$ workers, so its time grows
#   with $W$ while the compute shrinks like $1/W$. They cross at $W(W+1) \approx t_{\text{member}}\beta/8$,
#   whatever $P$ is — the number printed above. A tree broadcast (each worker forwards the
#   scores to two others) turns the $W$ into $\log_2 W$ and moves the limit far away; the
#   bytes per worker stay $8P$.
# * **The replicated update.** Every replica rebuilds all $P$ members' noise. Its cost per member
#   is a small fraction of a member's forward over $T$ bytes (a rank-1 update touches each weight
#   once per member, the forward $T$ times), so it overtakes the compute only at
#   $W \approx t_{\text{member}}/u_1$ workers. Past that, the way out is to shard the update too
#   (each worker updates a slice of the parameters), at the cost of sending parameter slices:
#   exactly the trade that data-parallel backprop cannot avoid.
#
# Backprop's all-reduce for this model would be $8d \approx$ 0.93 MB per worker per step: cheap at
# this size. For a billion parameters it is 8 GB per step; ES still sends $8P$ bytes.
#
# ## Summary
#
# - ES needs the $P$ scores of a generation to cross the wire, nothing else: the noise is a
#   function of (seed, leaf, epoch, member), so each worker rebuilds it.
# - Each worker holds a full replica (parameters, optimizer state, the noise table) and applies
#   the same update; the bits do not depend on the number of workers, checked by hash.
# - Communication per worker is $8P$ bytes per epoch against backprop's $\approx 8d$ per step; what
#   finally limits the speedup is the coordinator's link (a tree fixes it) and the replicated
#   update.
#
# ## Exercises
#
# Solutions, checked by the test suite: [solutions](solutions/10_es_across_machines.py).
#
# 1. **Independent streams.** Check that `member_noise` gives uncorrelated noise for neighbouring
#    members, leaves and epochs (sample correlations within $4/\sqrt{n}$ of 0), and that changing
#    any one of (seed, leaf, epoch, member) changes the noise.
# 2. **Partial sums break the bits.** Instead of sending scores, let each of $W = 4$ workers send
#    its partial sum $\sum_{m \in \text{shard}} z_m\varepsilon_m$ and the coordinator add them.
#    Show that the result equals the one-process sum to rounding but not bit for bit, and count
#    the bytes this sends per epoch against the scores.
# 3. **The crossover population.** For the D=64 model ($d$ = 116,224) and $W = 8$, find the
#    population $P$ at which ES's bytes per worker per epoch equal backprop's all-reduce bytes
#    per step, and check it with `es_bytes` and `allreduce_bytes`.
# 4. **A tree instead of a star.** Rewrite `epoch_time` with a binary-tree broadcast
#    ($\lceil\log_2 W\rceil$ hops of $\alpha + 8P/\beta$) and find, for $P = 2^{20}$, the number of workers
#    that minimises the epoch time in each model.
#
# **Next**, chapter 11: ES against backprop on the same model — what the forward passes cost,
# and what they buy.

# %%
book.finish(FIGURES)
