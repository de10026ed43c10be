# %% [markdown]
# # Chapter 3 — Low-rank perturbations
#
# A network's parameters are mostly matrices. Perturbing a matrix $W\in\mathbb{R}^{O\times I}$
# with full Gaussian noise, as chapters 1–2 did for vectors, gives every population member its
# own $O\times I$ matrix: $P$ of them to generate, store and multiply. EGGROLL (Sarkar et al.,
# *Evolution Strategies at the Hyperscale*, 2025) perturbs with a **rank-$r$** matrix instead,
# $$W_n = W + \frac{\sigma}{\sqrt r}A_nB_n^\top,\qquad A_n\in\mathbb{R}^{O\times r},\ B_n\in\mathbb{R}^{I\times r}.$$
#
# **What you will learn.**
#
# 1. The identity that makes this cheap, $x W_n^\top = xW^\top + \frac{\sigma}{\sqrt r}(xB_n)A_n^\top$,
#    checked against the materialised matrix — the slow way first, then the fast one.
# 2. What it costs on this machine: time against population and against rank, EggRoll against
#    the full-rank OpenES baseline, measured side by side.
# 3. Why the *update* $\sum_n f_nA_nB_n^\top$ has high rank although every perturbation has rank $r$.
# 4. Why low rank loses so little: the expected low-rank update approaches the full-rank
#    Gaussian one as $r$ grows, at the rate $O(1/r)$ the paper proves. We derive where the
#    $1/r$ comes from, why a quadratic objective cannot show it, and measure the slope.
# 5. The whole of EGGROLL from scratch in about 40 lines, and npegg computing the same numbers.
#
# **Run it**: `python tutorials/03_low_rank_perturbations.py` (or as a notebook). Figures go to
# `$NPEGG_TUTORIAL_OUT` (default `tutorials/figures/`); `NPEGG_TUTORIAL_SMALL=1` runs a small
# setting. The full setting took **4 min 16 s** on this machine (2 cores, heavily shared with other jobs).

# %%
import time

import numpy as np

import _book as book
from npegg.es import ES
from npegg.models import MM
from npegg.noise import NoiseTable
from npegg.noiser import EggRoll, Noiser, OpenES
from npegg.noiser.eggroll import get_lora_update_params

SMALL = book.choose_setting(None)  # None: NPEGG_TUTORIAL_SMALL decides; True = small (seconds), False = full
FIGURES = ["03_cost_vs_population.png", "03_cost_vs_rank.png", "03_update_rank.png", "03_bias_vs_rank.png",
           "03_from_scratch.png"]
plt = book.pyplot()
np.set_printoptions(precision=4, suppress=True)
rng = np.random.default_rng(3)


def best_time(fn, repeats=5):
    """Fastest of a few runs, in seconds (the machine is shared; the minimum is the fair number)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


# %% [markdown]
# ## 1. The identity
#
# Transpose the perturbation, $(A_nB_n^\top)^\top = B_nA_n^\top$, and multiply out:
# $$x\Big(W + \tfrac{\sigma}{\sqrt r}A_nB_n^\top\Big)^\top = xW^\top + \tfrac{\sigma}{\sqrt r}\,(xB_n)\,A_n^\top .$$
# For a row $x\in\mathbb{R}^{I}$, $xW^\top$ costs $OI$ multiplications and is *the same matrix for
# every member*: for the whole population it is one matrix–matrix product. The member's own
# part costs $Ir$ (for $xB_n$) plus $rO$ (for $\cdot A_n^\top$). Nothing of size $O\times I$ is
# ever built per member. (Why $\sigma/\sqrt r$: each entry of $A_nB_n^\top$ is a sum of $r$
# products of unit normals, variance $r$; dividing by $\sqrt r$ gives every entry variance 1,
# like full Gaussian noise.)
#
# Three implementations of the perturbed population forward, from the obvious to the fast, on
# one layer with $P$ members, one input row each:

# %%
P, O, I, r, sigma = 256, 256, 256, 4, 0.1
W = rng.standard_normal((O, I)) / np.sqrt(I)                  # (O, I)
x = rng.standard_normal((P, I))                               # (P, I): member p's input
A = rng.standard_normal((P, O, r))                            # (P, O, R)
B = rng.standard_normal((P, I, r))                            # (P, I, R)


def forward_loop():
    """Slowest: build each member's matrix, one member at a time."""
    out = np.empty((P, O))
    for p in range(P):
        Wp = W + sigma / np.sqrt(r) * A[p] @ B[p].T           # (O, I), materialised
        out[p] = x[p] @ Wp.T
    return out


def forward_materialised():
    """Vectorised but still full size: a (P, O, I) tensor of perturbed weights."""
    Wp = W + sigma / np.sqrt(r) * np.matmul(A, B.transpose(0, 2, 1))   # (P, O, I)
    return np.einsum("pi,poi->po", x, Wp)


def forward_lowrank():
    """EGGROLL: one shared matmul plus a rank-r correction per member."""
    xB = np.einsum("pi,pir->pr", x, B)                         # (P, R)
    return x @ W.T + sigma / np.sqrt(r) * np.einsum("pr,por->po", xB, A)   # (P, O)


ref = forward_loop()
t_fn = {}
for fn in (forward_loop, forward_materialised, forward_lowrank):
    t_fn[fn.__name__] = best_time(fn)
    print(f"{fn.__name__:22s} {1e3 * t_fn[fn.__name__]:8.1f} ms   max |difference from the loop| "
          f"{np.abs(fn() - ref).max():.1e}")
print(f"low rank is {t_fn['forward_loop'] / t_fn['forward_lowrank']:.0f}x faster than the loop; the (P, O, I) "
      f"tensor of the materialised version holds {P * O * I * 8 / 2**20:.0f} MiB (float64)")
print(f"per-member noise: {O * I:,} numbers materialised vs {(O + I) * r:,} as factors")

# %% [markdown]
# All three agree to rounding. Note that vectorising the *materialised* version buys little or
# nothing: it has to write and read back the whole $(P,O,I)$ tensor, and that memory traffic,
# not the Python loop, is the cost. Only the identity removes it. The same check on npegg's own code: `EggRoll.do_mm` against the
# matrices materialised from the factors the library itself generates
# (`get_lora_update_params` returns $\hat A_n = s_n\frac{\sigma}{\sqrt r}A_n$ with the antithetic
# sign $s_n$ already applied, and $B_n$):

# %%
table = NoiseTable(seed=0)                                        # npegg's noise source (chapter 4)
frozen, nparams = EggRoll.init_noiser({"w": W}, sigma, 0.0, rank=r, noise=table)
key = np.array([7, 11], dtype=np.uint32)                          # a leaf's key (chapter 4)
info = (0, np.arange(P))                                          # iterinfo = (epoch, members)
fast = EggRoll.do_mm(frozen, nparams, W, key, info, x)            # (P, O)
A_hat, B_lib = get_lora_update_params(frozen, sigma, info, W.shape, key)   # (P, O, R), (P, I, R)
slow = np.stack([x[p] @ (W + A_hat[p] @ B_lib[p].T).T for p in range(P)])
print(f"npegg do_mm vs materialised W_n: max |difference| {np.abs(fast - slow).max():.1e}")
print(f"members 0 and 1 (an antithetic pair) see W ± the same matrix: "
      f"{np.allclose(A_hat[0] @ B_lib[0].T, -(A_hat[1] @ B_lib[1].T))}")

# %% [markdown]
# ## 2. What it costs here
#
# Now time the three noisers of npegg on one linear layer, $O=I=D$, one input row per member (the
# case of a policy acting, or a language model generating one token): the plain forward
# (`Noiser`, no noise: what inference costs), `EggRoll` (rank $r$) and `OpenES` (full-rank
# noise, materialised as a $(P,O,I)$ tensor). Every call rebuilds its noise from the noise table,
# as training does (the table's cache is switched off), so noise generation is included. The
# floating-point work per call is
#
# | | shared $xW^\top$ | per-member noise | per-member product |
# |---|---|---|---|
# | plain | $PD^2$, one GEMM | — | — |
# | EggRoll | $PD^2$ | $2Dr$ numbers | $2Dr$ |
# | OpenES | $PD^2$ | $D^2$ numbers | $D^2$, one matrix–vector product each |
#
# so on paper EggRoll costs about $1+2r/D$ plain forwards, and OpenES needs $P$ matrix–vector
# products that each read a fresh $D\times D$ matrix from memory.

# %%
timing_table = NoiseTable(seed=0, cache_bytes=0)                  # no cache: noise is rebuilt on every call
timing_table.table                                                # build the 32 MiB table once, outside the timings
D = book.setting(128, 256)
Wt = (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32)
MAX_OPENES_BYTES = 600 << 20                                      # skip OpenES where its noise alone exceeds this


def time_noisers(P, rank, noisers=(Noiser, EggRoll, OpenES)):
    """Best-of-3 seconds of one perturbed forward of P members through the (D, D) layer."""
    xt = rng.standard_normal((P, D)).astype(np.float32)
    out = {}
    for nz in noisers:
        if nz is OpenES and P * D * D * 4 > MAX_OPENES_BYTES:
            out[nz.__name__] = np.nan
            continue
        fz, npar = nz.init_noiser({"w": Wt}, 0.1, 0.0, rank=rank, noise=timing_table)
        out[nz.__name__] = best_time(lambda: nz.do_mm(fz, npar, Wt, key, (0, np.arange(P)), xt),
                                     repeats=3 if nz is OpenES else 9)
    return out


pops = [64, 256, 1024, 4096] if not book.SMALL else [64, 256, 1024]
cost_P = {P: time_noisers(P, 1) for P in pops}
print(f"D = {D}, rank 1, one input row per member; milliseconds (best of 9, OpenES best of 3):")
print(f"{'P':>6} {'plain':>9} {'EggRoll':>9} {'OpenES':>9} {'Egg/plain':>10} {'OpenES/Egg':>11}")
for P, t in cost_P.items():
    print(f"{P:6d} {1e3 * t['Noiser']:9.2f} {1e3 * t['EggRoll']:9.2f} {1e3 * t['OpenES']:9.2f} "
          f"{t['EggRoll'] / t['Noiser']:10.1f} {t['OpenES'] / t['EggRoll']:11.1f}")
for P, t in cost_P.items():
    if np.isnan(t["OpenES"]):
        print(f"(OpenES skipped at P = {P}: its (P, D, D) float32 noise alone would take "
              f"{P * D * D * 4 / 2**30:.2f} GiB; the cap here is {MAX_OPENES_BYTES >> 20} MiB)")

# %%
if plt:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, m in (("Noiser", "o-"), ("EggRoll", "s-"), ("OpenES", "^-")):
        label = {"Noiser": "plain forward (no noise)", "EggRoll": "EggRoll, rank 1", "OpenES": "OpenES (full rank)"}[name]
        ax.loglog(pops, [1e3 * cost_P[P][name] for P in pops], m, label=label)
    ax.set(xlabel="population P", ylabel="ms per perturbed forward", title=f"One {D}×{D} layer, one row per member")
    ax.legend()
    book.save(fig, "03_cost_vs_population.png")

# %% [markdown]
# The time against rank at a fixed population. On paper EggRoll's per-member work $2Dr$ reaches
# OpenES's $D^2$ at $r=D/2$; OpenES does not depend on $r$.

# %%
P_rank = 1024 if not book.SMALL else 256
ranks = [1, 2, 4, 8, 16, 32, 64, 128] if not book.SMALL else [1, 4, 16, 64]
cost_r = {rk: time_noisers(P_rank, rk, (EggRoll,))["EggRoll"] for rk in ranks}
ref_t = time_noisers(P_rank, 1, (Noiser, OpenES))
print(f"P = {P_rank}, D = {D}: plain {1e3 * ref_t['Noiser']:.2f} ms, OpenES {1e3 * ref_t['OpenES']:.2f} ms")
for rk, t in cost_r.items():
    print(f"  EggRoll rank {rk:3d}: {1e3 * t:8.2f} ms  ({t / ref_t['Noiser']:5.1f}x plain, "
          f"{ref_t['OpenES'] / t:6.1f}x faster than OpenES)")

# %%
if plt:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.loglog(ranks, [1e3 * cost_r[k] for k in ranks], "s-", color="C1", label="EggRoll")
    ax.axhline(1e3 * ref_t["OpenES"], color="C2", ls="--", label="OpenES (any rank)")
    ax.axhline(1e3 * ref_t["Noiser"], color="C0", ls=":", label="plain forward")
    ax.axvline(D / 2, color="0.5", lw=0.8, label="r = D/2: equal flops on paper")
    ax.set(xlabel="rank r", ylabel="ms per perturbed forward", title=f"P = {P_rank}, one {D}×{D} layer")
    ax.legend(fontsize=8)
    book.save(fig, "03_cost_vs_rank.png")

# %% [markdown]
# ### A roofline account: why low-rank noise runs near inference speed
#
# The tables above are this run's, on a shared machine: they move from run to run, so the book
# prints them and does not claim them. What does not move is the arithmetic, and it says what to
# expect. A processor runs a kernel at the lower of two ceilings: its peak arithmetic rate, or
# its memory bandwidth times the kernel's **arithmetic intensity** (flops per byte moved). On a
# CPU or GPU the ratio of the two ceilings is tens of flops per byte: a kernel below that
# intensity is memory-bound and leaves the multipliers idle.
#
# For one layer of width $D$, $P$ members and $T$ input rows each (float32):
#
# | | flops | numbers moved (at least) | intensity, flops per number |
# |---|---|---|---|
# | plain $xW^\top$ | $2PTD^2$ | $D^2$ (weights, once) $+\ 2PTD$ (in and out) | $\approx\min(PT, D)$ |
# | EggRoll's extra term $(xB_n)A_n^\top$ | $4PTDr$ | $2PDr$ (factors) $+\ PTD$ | $\frac{4rT}{2r+T} < 2T$ |
# | OpenES $x(W+E_n)^\top$ | $2PTD^2$ | $PD^2$ (a matrix per member) $+\ 2PTD$ | $< 2T$ |
#
# The shared product is one large matrix multiplication whose weights are read once for all
# $PT$ rows: compute-bound, at full speed. EggRoll adds a term with the same low intensity as
# OpenES, but with $2r/D$ of the shared product's flops and $2r/D$ of OpenES's traffic per
# member — so its extra time is small however slowly it runs. OpenES does all its work at
# intensity $2T$: with one row per member ($T = 1$) that is 2 flops per number, memory-bound, so
# it runs at the memory bus's speed however many multipliers the machine has. That is why EGGROLL
# approaches inference throughput as the layers grow, and OpenES cannot.
#
# The counts for the layer timed above (exact), and the time ratios measured in this run
# (printed, not claimed):

# %%
def flops_and_numbers(P, D, r, T=1):
    """(flops, numbers moved) of the plain product, EggRoll's rank-r term, and OpenES, for one (D, D) layer."""
    plain = (2 * P * T * D * D, D * D + 2 * P * T * D)
    lowrank = (4 * P * T * D * r, 2 * P * D * r + P * T * D)
    openes = (2 * P * T * D * D, P * D * D + 2 * P * T * D)         # the products alone (forming W + E_n adds more)
    return plain, lowrank, openes


P_roof = max(P for P in pops if not np.isnan(cost_P[P]["OpenES"]))
plain_c, low_c, open_c = flops_and_numbers(P_roof, D, 1)
print(f"P = {P_roof}, D = {D}, rank 1, one row per member:")
for name, (fl, nums) in (("plain x Wᵀ", plain_c), ("EggRoll's rank-1 term", low_c), ("OpenES", open_c)):
    print(f"  {name:22s} {fl:14,d} flops  {nums:12,d} numbers moved  intensity {fl / nums:6.1f} flops/number")
print(f"  EggRoll adds {low_c[0] / plain_c[0]:.1%} of the plain flops (2r/D = {2 / D:.1%}); "
      f"OpenES moves {open_c[1] / plain_c[1]:.0f}x the plain traffic")
t = cost_P[P_roof]
print(f"  measured here: EggRoll / plain = {t['EggRoll'] / t['Noiser']:.1f}x, OpenES / plain = "
      f"{t['OpenES'] / t['Noiser']:.1f}x (timings: printed, never checked)")
book.check("EggRoll's extra flops over the plain product, rank 1, in units of 2r/D",
           (low_c[0] / plain_c[0]) / (2 / D), 1, 1e-12)                 # exact arithmetic
book.check("OpenES's intensity at T = 1, flops per number (about 2: memory-bound)",
           open_c[0] / open_c[1], 2, 0.05)                                   # 2 / (1 + 2/D)

# %% [markdown]
# On a CPU, in NumPy, the rank-$r$ term is a batch of small products that runs far below the
# machine's peak, so a measured ratio can sit well above $1 + 2r/D$ at these small widths; on a
# GPU, where EGGROLL batches the extra term into the same kernels, the paper measures
# "up to 91% of the throughput of pure batch inference" for billion-parameter models at large
# populations (Sarkar et al., *Evolution Strategies at the Hyperscale*, arXiv:2511.16652v2,
# abstract; [references](references.md)).
#
# ## 3. Rank-$r$ perturbations, high-rank updates
#
# The ES update for $W$ is a fitness-weighted sum of the perturbations (chapter 2),
# $G \propto -\sum_n f_n\, s_nA_nB_n^\top$. Each term has rank $r$, but a sum of $K$ rank-$r$
# matrices with independent random factors has rank $\min(Kr, O, I)$: the factors' columns are
# in general position. Antithetic partners share their factors, so $P$ members contribute $N=P/2$
# distinct terms, each weighted by $(f_{2k}-f_{2k+1})$. So with rank 1 and a population of a
# few hundred, the update of a $64\times64$ matrix is already full rank — and it is the
# *update*, not the perturbation, that has to resemble the gradient.
#
# Check with npegg on a linear regression $y = xW_\star^\top$, fitness $-\mathrm{mean}\lVert xW_n^\top - y\rVert^2$:

# %%
Dm = 64
W_star = rng.standard_normal((Dm, Dm)) / np.sqrt(Dm)
xs = rng.standard_normal((128, Dm))                                # a batch of 128 inputs
ys = xs @ W_star.T
update_rank = {}
for P in [2, 8, 32, 128, 512, 2048]:
    es, state = ES.create(MM, dict(in_dim=Dm, out_dim=Dm, dtype="float64"), pop_size=P, sigma=0.05, lr=1.0,
                          rank=1, seed=0, noise=table)
    out = es.forward(state, np.broadcast_to(xs, (P,) + xs.shape))    # (P, 128, Dm): every member's outputs
    raw = -((out - ys) ** 2).sum(-1).mean(-1)                          # (P,)
    G = state.params - es.step(state, raw).params                      # SGD, lr = 1: the step is −G (chapter 2)
    s = np.linalg.svd(G, compute_uv=False)
    grad = -2 * (xs @ state.params.T - ys).T @ xs / len(xs)            # exact ∇F, (Dm, Dm)
    cos = float(np.sum(-G * grad) / (np.linalg.norm(G) * np.linalg.norm(grad)))
    update_rank[P] = (s, int(np.sum(s > 1e-9 * s[0])), cos)
    law_cos = (1 + (Dm * Dm + 1) / (P // 2)) ** -0.5                  # chapter 1's scaling law, d = Dm², N = P/2
    print(f"P = {P:5d}: {P // 2:5d} distinct rank-1 terms, numerical rank of the update "
          f"{update_rank[P][1]:3d} (bound {min(P // 2, Dm)}), cosine with the true gradient {cos:.3f} "
          f"(chapter 1's law: {law_cos:.3f})")
    assert update_rank[P][1] == min(P // 2, Dm)                       # the rank bound, met exactly
    if P >= 128:                                       # one draw in d = 4096: fluctuations of a few hundredths
        book.check(f"cosine of the update with the gradient, P = {P}", cos, law_cos, 0.05)
book.check("cosine at P = 128", update_rank[128][2], 0.1, 0.05)

# %%
if plt:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for P, (s, _, _) in update_rank.items():
        a1.semilogy(np.arange(1, len(s) + 1), s / s[0], ".-", ms=3, label=f"P = {P}")
    a1.set(xlabel="index i", ylabel="singular value s_i / s_1", ylim=(1e-6, 2),
           title=f"Spectrum of the update of a {Dm}×{Dm} matrix, rank-1 noise")
    a1.legend(fontsize=8)
    Ps = list(update_rank)
    a2.semilogx(Ps, [update_rank[P][1] for P in Ps], "o-", label="numerical rank of the update")
    a2.semilogx(Ps, [min(P // 2, Dm) for P in Ps], "k--", label="min(P/2, 64)")
    a2b = a2.twinx()
    a2b.semilogx(Ps, [update_rank[P][2] for P in Ps], "s:", color="C3", label="cosine with ∇F")
    a2b.semilogx(Ps, [(1 + (Dm * Dm + 1) / (P // 2)) ** -0.5 for P in Ps], "-", color="C3", lw=0.6,
                 label="(1 + (d+1)/N)^−½")
    a2b.set_ylim(0, 1)
    a2.set(xlabel="population P", ylabel="rank", title="rank and accuracy of the update")
    a2.legend(loc="upper left", fontsize=8)
    a2b.legend(loc="lower right", fontsize=8)
    book.save(fig, "03_update_rank.png")

# %% [markdown]
# The rank bound is met exactly: $P/2$ distinct terms until the matrix is full. But rank is not
# accuracy: at full rank ($P=128$) the update is still mostly sampling noise (cosine with the
# gradient about 0.1), and the cosine grows with $P$ just as chapter 1's scaling law says,
# $(1 + (d+1)/N)^{-1/2}$ with $d = 64^2$ parameters and $N = P/2$ pairs. A rank-1 perturbation
# restricts what *one member* explores, not what the population's update can express.
#
# Low rank costs little here, but not nothing, and the price can be computed. For a linear
# fitness $F(W) = \langle G, W\rangle$ one pair contributes $\langle G,E\rangle E$, and chapter 1's
# scaling law comes from its second moment. For full Gaussian noise that is
# $\mathbb{E}\lVert\langle G,Z\rangle Z\rVert^2 = (OI+2)\lVert G\rVert^2$ (chapter 1, with $d = OI$). For
# $E = AB^\top/\sqrt r$ it is
# $$\mathbb{E}\lVert\langle G,E\rangle E\rVert^2 = \Big(OI + 2 + \frac{2(O+I+1)}{r}\Big)\lVert G\rVert^2 .$$
# (At $r = 1$: condition on $b$ and put $u = Gb$; then $\mathbb{E}_a[(a^\top u)^2\lVert a\rVert^2] = (O+2)\lVert u\rVert^2$,
# and $\mathbb{E}_b[\lVert Gb\rVert^2\lVert b\rVert^2] = (I+2)\lVert G\rVert^2$ by the same identity: the product is
# $(O+2)(I+2) = OI + 2 + 2(O+I+1)$.) The extra $2(O+I+1)/r$ is small next to $OI$ for a large
# square matrix — **+6 %** at $64\times64$, rank 1, invisible in the cosines above — but not for a
# thin one: **+61 %** for the $4\times20$ layer that section 5 trains (+15 % at rank 4). Measured:

# %%
def pair_second_moment(O, I, r, M, rng):
    """E‖⟨G,E⟩E‖² / ‖G‖² for E = A Bᵀ/√r (unit Gaussian factors), by Monte Carlo over M draws, and its s.e."""
    G = rng.standard_normal((O, I))                                            # (O, I)
    vals = []
    for _ in range(M // 50_000):                                               # chunks of 50,000 draws
        A = rng.standard_normal((50_000, O, r))                                # (M', O, R)
        B = rng.standard_normal((50_000, I, r))                                # (M', I, R)
        inner = np.einsum("mor,oi,mir->m", A, G, B) / np.sqrt(r)               # ⟨G, E⟩
        norm2 = np.einsum("mjk,mjk->m", A.transpose(0, 2, 1) @ A, B.transpose(0, 2, 1) @ B) / r   # ‖A Bᵀ‖²/r
        vals.append(inner**2 * norm2 / np.sum(G**2))
    v = np.concatenate(vals)
    return v.mean(), v.std() / np.sqrt(len(v))


M_mom = book.setting(200_000, 1_000_000)
rng_mom = np.random.default_rng(33)                                            # its own stream
for (O_m, I_m, r_m), quoted in (((4, 20, 1), 61), ((4, 20, 4), 15), ((64, 64, 1), 6)):   # the % the text quotes
    m, se = pair_second_moment(O_m, I_m, r_m, M_mom, rng_mom)
    full = O_m * I_m + 2
    pred = full + 2 * (O_m + I_m + 1) / r_m
    print(f"{O_m:2d}×{I_m:<2d} rank {r_m}: E‖<G,E>E‖²/‖G‖² = {m:8.1f} ± {se:5.1f}, formula {pred:7.1f}; "
          f"full-rank Gaussian {full}: {100 * (m / full - 1):+5.1f} % (formula {100 * (pred / full - 1):+5.1f} %)")
    book.check(f"excess second moment of a rank-{r_m} pair over full rank, {O_m}x{I_m}, in %",
               100 * (m / full - 1), quoted, 100 * 4 * se / full + 0.5)   # 4 s.e. + the text's rounding

# %% [markdown]
# So the scaling law of a rank-$r$ population is chapter 1's with $d+1$ replaced by
# $OI + 1 + 2(O+I+1)/r$: low rank pays a little extra variance, which shrinks like $1/r$ and, for
# the wide matrices of real networks, is a fraction of a per cent of $OI$.
#
# ### What the update costs
#
# The update is the sum $\sum_n f_n\hat A_nB_n^\top$ of $P$ rank-$r$ matrices of size $O\times I$.
# Formed one member at a time it costs $P$ outer products and $P$ temporaries of size $O\times I$.
# npegg (and section 5's from-scratch loop) stacks the weighted factors side by side instead,
# $$\sum_n f_n\hat A_nB_n^\top = \underbrace{\big[f_1\hat A_1\ \cdots\ f_P\hat A_P\big]}_{O\times Pr}\;\underbrace{\begin{bmatrix}B_1^\top\\ \vdots\\ B_P^\top\end{bmatrix}}_{Pr\times I},$$
# **one matrix product** of $O\cdot Pr\cdot I$ multiply-adds — the same count as the loop, but in
# one BLAS call that keeps the cache and the vector units busy. Compare the forward pass: with
# one input row per member it costs $P\cdot O\cdot I$ for the shared product, so at rank $r$ the
# update costs about $r$ forward passes' worth of arithmetic, once per generation. (With $T$
# input rows per member — a sequence of $T$ tokens — the forward costs $T$ times more and the
# update is a small fraction of it.) Measured on the $D\times D$ layer of section 2:

# %%
def update_time(P, rank):
    """Best-of-5 seconds of npegg's update step for one (D, D) matrix, and of the one-member-at-a-time loop."""
    es_u, st_u = ES.create(MM, dict(in_dim=D, out_dim=D), pop_size=P, sigma=0.1, lr=1.0, rank=rank,
                           noise=timing_table)
    raw = rng.standard_normal(P)
    t_mm = best_time(lambda: es_u.step(st_u, raw))                    # shaping, the one-matmul G, SGD
    f = es_u.fitness(st_u, raw)
    info = (np.zeros(P, int), np.arange(P))

    def loop():
        A_, B_ = get_lora_update_params(es_u.frozen_noiser_params, 0.1, info, (D, D), es_u.es_tree_key)  # (P, D, r)
        acc = np.zeros(Wt.shape, np.float32)
        for n in range(P):
            acc += f[n] * (A_[n] @ B_[n].T)
        return acc
    G_step = st_u.params - es_u.step(st_u, raw).params               # G = −(1/√P) Σ f_n Â_n B_nᵀ (chapter 2)
    assert np.abs(G_step + loop() / np.sqrt(P)).max() < 1e-4 * np.abs(G_step).max()   # the slow twin agrees (float32)
    return t_mm, best_time(loop)


for P, rk in ((P_rank, 1), (P_rank, 4)):
    t_mm, t_loop = update_time(P, rk)
    t_fwd = time_noisers(P, rk, (Noiser,))["Noiser"]
    print(f"P = {P}, D = {D}, rank {rk}: update as one matmul {1e3 * t_mm:6.2f} ms, member loop {1e3 * t_loop:7.2f} ms "
          f"({t_loop / t_mm:4.1f}x), plain forward of one row per member {1e3 * t_fwd:5.2f} ms")

# %% [markdown]
# ## 4. How close is low rank to full rank?
#
# ### Where a $1/r$ comes from
#
# Write $E_r = A B^\top/\sqrt r = \frac{1}{\sqrt r}\sum_{j=1}^r a_jb_j^\top$ (the columns of
# $A$ and $B$) and let $Z$ be a full Gaussian matrix. Three facts:
#
# 1. *Odd moments vanish*: flipping the sign of $A$ flips $E_r$, so $E_r$ and $-E_r$ have the same law.
# 2. *Second moments match*: $\mathbb{E}[(E_r)_{ik}(E_r)_{jl}] = \frac1r\sum_{s,t}\mathbb{E}[A_{is}A_{jt}]\,\mathbb{E}[B_{ks}B_{lt}]
#    = \frac1r\sum_s\delta_{ij}\delta_{kl} = \delta_{ij}\delta_{kl}$, exactly as for $Z$.
# 3. *Fourth moments differ by $O(1/r)$*: $E_r$ is a normalised sum of $r$ independent copies of
#    the rank-one matrix $ab^\top$. Cumulants add over independent terms, and the normalisation
#    scales the $k$-th cumulant by $r^{-k/2}$; so the fourth cumulant of $E_r$ is $r\cdot r^{-2} = 1/r$
#    times that of $ab^\top$ (whose entries have kurtosis $\mathbb{E}[a^4]\mathbb{E}[b^4]=9$, not 3),
#    while $Z$'s is zero. This is the central limit theorem's first correction, which for a
#    general sum is of order $1/\sqrt r$ (the third cumulant, the skewness). Here the odd cumulants
#    vanish (fact 1), so the first correction that survives is the fourth cumulant's $1/r$.
#
# Now expand the antithetic estimate (chapter 1) for a smooth $F$, with $D^kF$ the $k$-th derivative:
# $$\frac{F(W+\sigma E)-F(W-\sigma E)}{2\sigma}\,E = \langle\nabla F,E\rangle E + \frac{\sigma^2}{6}D^3F[E,E,E]\,E + O(\sigma^4).$$
# Take expectations. The first term gives $\nabla F$ for *every* $r$ (fact 2). The second is a
# fourth moment of $E$: Gaussian part plus (fact 3) a $1/r$ part. Higher terms contribute
# $1/r$ and smaller. So
# $$\bar g_r - \bar g_\infty = \frac{c_1}{r} + \frac{c_2}{r^2} + \dots,\qquad c_1 \propto \sigma^2 D^3F,$$
# where $\bar g_r = \mathbb{E}[\hat g_r]$ is the *expected* rank-$r$ update and $\bar g_\infty$ the full-rank
# Gaussian one — the paper's $O(1/r)$. (A bar marks an expectation, a hat an estimate from one
# population, as everywhere in this book.) For a **quadratic** $F$ every derivative beyond the second vanishes, the
# difference quotient equals $\langle\nabla F,E\rangle$ exactly, and $\bar g_r = \nabla F$ for all $r$:
# no bias at all, nothing to see. (npegg's exact tests use precisely this.) We need a
# non-quadratic objective, and we need to measure a small difference of *expectations* under
# sampling noise, which takes care.
#
# ### The objective
#
# A softmax classifier: $W\in\mathbb{R}^{4\times 8}$ maps 8 features to 4 class scores, and
# $F(W)$ is the mean log-likelihood of 8 labelled points. It is smooth, every derivative is
# non-zero, and $\nabla F$ is known in closed form. ($r$ will go past $\min(4,8)$: $AB^\top/\sqrt r$
# is then no longer of rank $r$, but it is still a sum of $r$ rank-one terms, and it is where
# the limit $r\to\infty$ lives. In practice $r\ll\min(O,I)$.)

# %%
C_, F_, N_, sig_b = 4, 8, 8, 1.0                          # classes, features, data points, sigma
b_rng = np.random.default_rng(30)
Xb = (2 * b_rng.standard_normal((N_, F_)) / np.sqrt(F_)).astype(np.float32)   # (N_, F_)
yb = b_rng.integers(0, C_, N_)
Wb = (b_rng.standard_normal((C_, F_)) / np.sqrt(F_)).astype(np.float32)      # (C, F): where we look
L0 = Xb @ Wb.T                                            # (N_, C) logits at Wb
onehot = np.eye(C_, dtype=np.float32)[yb]                 # (N_, C)


def loglik(dlogits):
    """F at Wb + Δ, given the logit change Δ-part x Δᵀ: (M, N_, C) -> (M,)."""
    z = L0 + dlogits
    m = z.max(-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(z - m).sum(-1))
    return (z * onehot).sum(-1).mean(-1) - lse.mean(-1)


def grad_loglik(dlogits):
    """∇F at Wb + Δ: (M, N_, C) -> (M, C, F_)."""
    z = L0 + dlogits
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    resid = (onehot - p).transpose(0, 2, 1)               # (M, C, N_)
    return (resid.reshape(-1, N_) @ Xb).reshape(len(z), C_, F_) / N_


g_true = grad_loglik(np.zeros((1, N_, C_), np.float32))[0]   # ∇F(Wb), (C, F)


def sample_E(M, r):
    """M perturbations and their logit changes x Eᵀ; r = None for a full Gaussian matrix."""
    if r is None:
        Z = rng.standard_normal((M, C_, F_), dtype=np.float32)                      # (M, C, F)
        return Z, None, None, np.matmul(Xb, Z.transpose(0, 2, 1))                   # (M, N_, C)
    A = rng.standard_normal((M, C_, r), dtype=np.float32)                           # (M, C, R)
    B = rng.standard_normal((M, F_, r), dtype=np.float32)                           # (M, F, R)
    dl = np.matmul(np.matmul(Xb, B), A.transpose(0, 2, 1)) / np.float32(np.sqrt(r))  # x B Aᵀ/√r: (M, N_, C)
    return None, A, B, dl


# %% [markdown]
# ### Measuring the bias directly
#
# Average the antithetic estimate over many perturbations. One trick makes this affordable: a
# **control variate**. The term $\langle\nabla F,E\rangle E$ has expectation exactly $\nabla F$ for every
# $r$ (fact 2), so subtract it sample by sample; the residual
# $$h(E) = \Big[\tfrac{F(W+\sigma E)-F(W-\sigma E)}{2\sigma} - \langle\nabla F,E\rangle\Big]E,\qquad \mathbb{E}[h] = \bar g_r - \nabla F,$$
# is of order $\sigma^2$ per sample instead of order 1, so its average is far less noisy. The
# bias is then $\mathbb{E}_r[h]-\mathbb{E}_\infty[h]$. We average in chunks and report the standard
# error of the mean across chunks.

# %%
CHUNK = 50_000


def mean_and_se(sample_fn, M):
    """Mean over M samples of sample_fn(m) -> (C, F) chunk means, and its standard error."""
    means = np.array([sample_fn(CHUNK) for _ in range(max(2, M // CHUNK))], dtype=np.float64)
    return means.mean(0), means.std(0, ddof=1) / np.sqrt(len(means))


def direct_residual(r):
    def chunk(M):
        Z, A, B, dl = sample_E(M, r)
        diff = (loglik(sig_b * dl) - loglik(-sig_b * dl)) / (2 * sig_b)               # (M,)
        if r is None:
            lin = np.einsum("cf,mcf->m", g_true, Z)                                  # <∇F, E>
            return np.tensordot(diff - lin, Z, axes=(0, 0)) / M
        lin = np.einsum("mcr,mcr->m", A, np.matmul(g_true, B)) / np.sqrt(r)         # <∇F, A Bᵀ>/√r
        w = (diff - lin)[:, None, None] * A                                          # (M, C, R)
        return np.einsum("mcr,mfr->cf", w, B) / (M * np.sqrt(r))
    return chunk


# %% [markdown]
# ### A second, quieter way to compute the same expectation
#
# Fix $B$. Then each row of $E_r = AB^\top/\sqrt r$ is $B a_i/\sqrt r$ with $a_i\sim\mathcal N(0,I_r)$:
# a Gaussian vector with covariance $\Sigma_B = BB^\top/r$, rows independent. For Gaussian vectors
# *Stein's lemma* (integration by parts against the Gaussian density) says
# $\mathbb{E}[f(u)\,u] = \Sigma\,\mathbb{E}[\nabla f(u)]$. Applied row by row to $f(E) = F(W+\sigma E)$:
# $$\bar g_r = \frac1\sigma\mathbb{E}\big[F(W+\sigma E_r)E_r\big] = \mathbb{E}\Big[\nabla F(W+\sigma E_r)\,\frac{BB^\top}{r}\Big],
#   \qquad \bar g_\infty = \mathbb{E}\big[\nabla F(W+\sigma Z)\big].$$
# A pleasant reading: the low-rank ES update is the average gradient over the perturbed points,
# seen through a random matrix $BB^\top/r$ whose mean is the identity and whose fluctuations shrink
# as $r$ grows. For the average we use the same two tricks as before — antithetic pairs and the
# control variate $\nabla F(W)\,BB^\top/r$, whose mean is $\nabla F(W)$:
# $$s(E) = \Big[\tfrac12\big(\nabla F(W+\sigma E)+\nabla F(W-\sigma E)\big) - \nabla F(W)\Big]\frac{BB^\top}{r},\qquad \mathbb{E}[s] = \bar g_r-\nabla F .$$
# Same expectation as $h$, smaller variance (it uses the gradient of $F$, which ES itself never
# needs: here it is only a measuring instrument).

# %%
def stein_residual(r):
    def chunk(M):
        Z, A, B, dl = sample_E(M, r)
        gbar = 0.5 * (grad_loglik(sig_b * dl) + grad_loglik(-sig_b * dl)) - g_true   # (M, C, F)
        if r is None:
            return gbar.mean(0)
        return np.einsum("mcr,mfr->cf", np.matmul(gbar, B), B) / (M * r)           # gbar B Bᵀ / r
    return chunk


M_stein = book.setting(100_000, 1_500_000)
M_direct = book.setting(100_000, 1_000_000)
bias_ranks = [1, 2, 4, 8] if book.SMALL else [1, 2, 4, 8, 16, 32, 64]
direct_ranks = [1, 4]
t0 = time.perf_counter()
ref_s, ref_s_se = mean_and_se(stein_residual(None), 2 * M_stein)
ref_d, ref_d_se = mean_and_se(direct_residual(None), 2 * M_direct)
print(f"full-rank Gaussian: ḡ_inf - ∇F has norm {np.linalg.norm(ref_s):.4f} (Stein) / {np.linalg.norm(ref_d):.4f} "
      f"(direct); |∇F| = {np.linalg.norm(g_true):.4f}, |ḡ_inf| = {np.linalg.norm(g_true + ref_s):.4f}")
bias = {}
for rk in bias_ranks:
    m, se = mean_and_se(stein_residual(rk), M_stein)
    bias[rk] = (np.linalg.norm(m - ref_s), np.sqrt(np.sum(se**2 + ref_s_se**2)))
direct = {}
for rk in direct_ranks:
    m, se = mean_and_se(direct_residual(rk), M_direct)
    direct[rk] = (np.linalg.norm(m - ref_d), np.sqrt(np.sum(se**2 + ref_d_se**2)))
print(f"({time.perf_counter() - t0:.0f} s of sampling)")
print(f"{'r':>4} {'|ḡ_r - ḡ_inf|':>14} {'± noise':>9} {'relative':>9} {'r x bias':>9}   direct estimate")
for rk, (b, se) in bias.items():
    d_txt = f"{direct[rk][0]:.4f} ± {direct[rk][1]:.4f}" if rk in direct else ""
    print(f"{rk:4d} {b:14.5f} {se:9.5f} {b / np.linalg.norm(g_true + ref_s):9.4f} {rk * b:9.4f}   {d_txt}")

# %% [markdown]
# The slope on a log-log plot: fit $\log|\bar g_r-\bar g_\infty|$ against $\log r$ by least squares,
# weighting each point by its precision, and compare with the $c/r$ line.

# %%
rs = np.array(bias_ranks, dtype=float)
b_ = np.array([bias[k][0] for k in bias_ranks])
se_ = np.array([bias[k][1] for k in bias_ranks])
r_min = 4 if np.sum(rs >= 4) >= 3 else 2                   # the asymptotic regime, where c1/r dominates
use = rs >= r_min
coef, cov = np.polyfit(np.log(rs[use]), np.log(b_[use]), 1, w=b_[use] / se_[use], cov="unscaled")
slope, slope_se = coef[0], np.sqrt(cov[0, 0])
print(f"fitted log-log slope for r >= {r_min}: {slope:.3f} ± {slope_se:.3f}   (the paper's rate: -1)")
for lo, hi in zip(bias_ranks[:-1], bias_ranks[1:]):
    print(f"  local slope r = {lo:2d} -> {hi:2d}: {np.log(bias[hi][0] / bias[lo][0]) / np.log(hi / lo):6.2f}")
# the two leading terms, c1/r + c2/r², by weighted linear least squares on all ranks
basis = np.stack([1 / rs, 1 / rs**2], axis=1) / se_[:, None]
(c1, c2), *_ = np.linalg.lstsq(basis, b_ / se_, rcond=None)
chi = (b_ - c1 / rs - c2 / rs**2) / se_
print(f"two-term fit |ḡ_r - ḡ_inf| = {c1:.4f}/r + ({c2:.4f})/r²: residuals {np.round(chi, 1)} standard errors")
# the claims of the paragraph after the figure, each within its own standard error
book.check("fitted log-log slope of the low-rank bias", slope, -1, 2.5 * slope_se)
book.check("max |residual| of the two-term fit, in standard errors", np.abs(chi).max(), 0, 2)
book.check("bias at r = 1, relative to |ḡ_inf|", bias[1][0] / np.linalg.norm(g_true + ref_s), 0.06, 0.03)
for rk in direct_ranks:                        # the two measurements agree where both were made
    book.check(f"direct - Stein bias estimate at r = {rk}, in standard errors",
               (direct[rk][0] - bias[rk][0]) / np.hypot(direct[rk][1], bias[rk][1]), 0, 3)

# quadratic check: the residual of a quadratic objective is zero sample by sample
Q = rng.standard_normal((C_ * F_, C_ * F_))
Q = -(Q @ Q.T) / (C_ * F_)                                # a concave quadratic form
quad = lambda v: 0.5 * np.einsum("mi,ij,mj->m", v, Q, v) + v @ np.arange(C_ * F_)   # F(W + V), V flattened
Wq = rng.standard_normal(C_ * F_)
gq = Q @ Wq + np.arange(C_ * F_)
Eq = (rng.standard_normal((1000, C_, 1)) @ rng.standard_normal((1000, 1, F_))).reshape(1000, -1)
resid_q = (quad(Wq + sig_b * Eq) - quad(Wq - sig_b * Eq)) / (2 * sig_b) - Eq @ gq
print(f"quadratic objective, rank 1: max |difference quotient - <∇F, E>| over 1000 samples = "
      f"{np.abs(resid_q).max():.1e} (relative to |<∇F, E>| ~ {np.abs(Eq @ gq).mean():.0f})")
assert np.abs(resid_q).max() < 1e-10 * np.abs(Eq @ gq).mean()      # zero up to rounding

# %%
if plt:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.errorbar(rs, b_, yerr=2 * se_, fmt="o", capsize=3, label="measured (Stein form), ±2 s.e.")
    dr = np.array(direct_ranks, dtype=float)
    ax.errorbar(dr * 1.08, [direct[k][0] for k in direct_ranks], yerr=[2 * direct[k][1] for k in direct_ranks],
                fmt="s", mfc="none", capsize=3, label="measured (direct antithetic average)")
    c = np.exp(np.average(np.log(b_[use] * rs[use]), weights=(b_[use] / se_[use]) ** 2))
    grid = np.geomspace(1, rs[-1], 50)
    ax.loglog(grid, c / grid, "k--", label="paper's rate: c / r")
    ax.loglog(grid, c1 / grid + c2 / grid**2, ":", color="C3", label="fit c₁/r + c₂/r²")
    ax.set(xscale="log", yscale="log", xlabel="rank r", ylabel="‖ḡ_r − ḡ_∞‖  (ḡ: expected update)",
           title="Low-rank ES update → full-rank Gaussian update")
    ax.legend(fontsize=8)
    book.save(fig, "03_bias_vs_rank.png")

# %% [markdown]
# The two measurements agree where both were made, and the bias falls like $1/r$: from $r=4$ on the
# fitted slope is $-1$ within its error, $r\times$bias levels off at a constant (the table's last
# column), and two terms $c_1/r + c_2/r^2$ describe every point within its error bar.
# (The small-$r$ points bend the curve: there the $1/r^2$ term still matters, which is why a fit
# that includes $r=1$ and $2$ gives a shallower slope.)
# At $r=1$ the low-rank update differs from the full-rank Gaussian one by a few per cent of its
# length here (about 6%), and with $\sigma=1$ — a *large* perturbation for this problem. The bias scales like
# $\sigma^2/r$, and it is a bias of the *expected* update: with a population of thousands the
# sampling noise of one generation is usually larger. That is why rank 1 works in practice (the
# seed notebook trains with rank 1), and why the update need not be low-rank (section 3).

# %% [markdown]
# ## 5. Putting it together: EGGROLL from scratch
#
# Everything is now in place: chapter 1's antithetic pairs, chapter 2's z-scores, its
# $G = -\sigma^2\sqrt P\,\hat g$ and Adam, and this chapter's identity and one-matmul update. Here is
# the whole algorithm in about 40 lines of NumPy, on a parameter that is a **matrix**, before
# npegg's library is shown to compute the same numbers. Fit
# $W\in\mathbb{R}^{O\times I}$ ($O=4$ outputs, $I=20$ inputs: the ill-conditioned features of chapter 2) to targets
# $y = xW_\star^\top$, fitness $F(W) = -\frac1n\sum_i\lVert x_iW^\top - y_i\rVert^2$. One generation:
#
# 1. **Noise.** Pair $k$ draws unit factors $A_k\in\mathbb{R}^{O\times r}$, $B_k\in\mathbb{R}^{I\times r}$;
#    member $n$ is the matrix $W_n = W + s_n\frac{\sigma}{\sqrt r}A_{\lfloor n/2\rfloor}B_{\lfloor n/2\rfloor}^\top$.
# 2. **Forward through the low-rank identity** (section 1): $W_n$ is never
#    built, because $XW_n^\top = XW^\top + s_n\frac{\sigma}{\sqrt r}(XB)A^\top$ — one shared product
#    plus a thin one per member.
# 3. **Fitness shaping**: the $P$ raw scores become z-scores $f_n$ (chapter 2).
# 4. **The update as one matrix product** (section 3). The estimate handed to the optimizer
#    (chapter 2 explains its sign and scale) is $G = -\frac{1}{\sqrt P}\sum_n f_n\,\hat A_n B_n^\top$ with
#    $\hat A_n = s_n\frac{\sigma}{\sqrt r}A_n$. Stack the weighted factors side by side,
#    $[f_1\hat A_1,\dots,f_P\hat A_P]$ of shape $(O\times Pr)$ and $[B_1,\dots,B_P]^\top$ of shape
#    $(Pr\times I)$: the sum of $P$ outer products *is* their product, one BLAS call of
#    $O\cdot Pr\cdot I$ multiply-adds, and no $(P, O, I)$ tensor is ever formed.
# 5. **Adam** with its bias correction (chapter 2, section 4).

# %%
d, n_data = 20, 200                                                       # chapter 2's features, same draws
data_rng = np.random.default_rng(1)
X = data_rng.standard_normal((n_data, d)) * np.logspace(-1, 1, d)         # (n, I): scales 0.1 ... 10
data_rng.standard_normal(d), data_rng.standard_normal(n_data)             # chapter 2's labels (not used here)
O_, I_ = 4, d
W_star = data_rng.standard_normal((O_, I_))                               # (O, I) the answer
Y = X @ W_star.T                                                          # (n, O) targets
W_init = np.zeros((O_, I_))                                               # (O, I) where both runs start


def scratch_noise(epoch, pairs, rank):
    """Unit factors of every pair at this epoch: (N, I + O, r), B = rows :I, A = rows I:."""
    return np.random.default_rng([7, epoch]).standard_normal((pairs, I_ + O_, rank))


def eggroll_from_scratch(W, P, sigma, lr, rank, epochs, b1=0.9, b2=0.999, eps=1e-8):
    """EGGROLL + Adam on F(W) = −mean ‖x Wᵀ − y‖², in plain NumPy. Returns W and the loss per epoch."""
    m, v = np.zeros_like(W), np.zeros_like(W)                             # Adam's moments, (O, I)
    s = np.where(np.arange(P) % 2 == 0, 1.0, -1.0)                        # (P,) antithetic signs
    losses = []
    for epoch in range(epochs):
        M = np.repeat(scratch_noise(epoch, P // 2, rank), 2, axis=0)      # (P, I+O, r): pairs share
        B, A = M[:, :I_], M[:, I_:]                                       # (P, I, r), (P, O, r)
        scale = s * sigma / np.sqrt(rank)                                 # (P,)
        # forward through the identity X W_nᵀ = X Wᵀ + scale_n (X B_n) A_nᵀ
        out = X @ W.T + scale[:, None, None] * ((X @ B) @ A.transpose(0, 2, 1))   # (P, n, O)
        raw = -((out - Y) ** 2).sum(-1).mean(-1)                          # (P,) fitness
        f = (raw - raw.mean()) / np.sqrt(raw.var() + 1e-5)                # (P,) z-scores
        # the update as one matmul: (O × P·r) @ (P·r × I)
        A_w = (A * (f * scale)[:, None, None]).transpose(1, 0, 2).reshape(O_, P * rank)
        G = -(A_w @ B.transpose(0, 2, 1).reshape(P * rank, I_)) / np.sqrt(P)   # (O, I)
        k = epoch + 1                                                     # Adam, bias-corrected
        m = b1 * m + (1 - b1) * G
        v = b2 * v + (1 - b2) * G**2
        c1 = np.float32(1) - np.float32(b1) ** np.float32(k)            # 1 − βᵏ as optax forms it, in float32
        c2 = np.float32(1) - np.float32(b2) ** np.float32(k)
        m_hat, v_hat = m / c1, v / c2
        W = W - lr * m_hat / (np.sqrt(v_hat) + eps)
        losses.append(np.mean(np.sum((X @ W.T - Y) ** 2, axis=1)))
    return W, np.array(losses)


P0, sigma0, lr0, rank0, epochs0 = 64, 0.5, 0.05, 4, book.setting(100, 300)
W_scratch, loss_scratch = eggroll_from_scratch(W_init, P0, sigma0, lr0, rank0, epochs0)
print(f"from scratch: loss {np.mean(np.sum(Y ** 2, axis=1)):.2f} at W = 0 -> {loss_scratch[-1]:.4f} after {epochs0} epochs")

# %% [markdown]
# Now the same run with npegg. The library accepts any *noise source* (chapter 4 explains the
# interface: an object with a `lowrank` method); we give it one that returns exactly the factors
# the loop above drew, so that both runs see the same noise. `ES.create` builds a model (`MM`: one
# matrix, $y = xW^\top$), the EggRoll noiser and Adam; `es.forward` is steps 1–2 for the whole
# population, `es.step` steps 3–5. (We set the initial weights to the same zeros.)

# %%
from dataclasses import replace                      # noqa: E402


class ScratchNoise:
    """A noise source returning the from-scratch factors: member n reads pair n // 2."""

    def lowrank(self, key, epoch, members, shape, rank, noise_reuse):
        M = scratch_noise(epoch, P0 // 2, rank)[np.asarray(members) // 2]  # (P, I+O, r)
        return M[:, shape[1]:], M[:, :shape[1]]                              # A (P, O, r), B (P, I, r)


es, state = ES.create(MM, dict(in_dim=I_, out_dim=O_, dtype="float64"), pop_size=P0, sigma=sigma0, lr=lr0,
                      solver="adam", rank=rank0, noise=ScratchNoise())
state = replace(state, params=W_init)
loss_lib = []
for epoch in range(epochs0):
    out = es.forward(state, np.broadcast_to(X, (P0,) + X.shape))            # (P, n, O)
    state = es.step(state, -((out - Y) ** 2).sum(-1).mean(-1))
    loss_lib.append(np.mean(np.sum((X @ state.params.T - Y) ** 2, axis=1)))
diff = np.abs(state.params - W_scratch).max()
print(f"npegg:        loss -> {loss_lib[-1]:.4f}; max |W_npegg - W_scratch| = {diff:.1e} (|W| ~ {np.abs(W_scratch).max():.1f})")
# float32 σ/√r in the library, the bias correction formed as optax in both: agreement to rounding
book.check("from-scratch EGGROLL vs npegg, max |ΔW| / max |W|", diff / np.abs(W_scratch).max(), 0, 1e-6)
book.check("from-scratch EGGROLL: final loss / initial loss", loss_scratch[-1] / np.mean(np.sum(Y ** 2, axis=1)),
           0, 0.05)

# %%
if plt:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy(loss_scratch, lw=3, alpha=0.4, label="from scratch (40 lines)")
    ax.semilogy(loss_lib, "k--", lw=1, label="npegg (ES.create / forward / step)")
    ax.set(xlabel="epoch", ylabel="mean squared error", title=f"EGGROLL + Adam, P = {P0}, rank {rank0}: same numbers")
    ax.legend()
    book.save(fig, "03_from_scratch.png")

# %% [markdown]
# The two curves lie on top of each other: npegg is these 40 lines, organised so that any model
# and any noiser can be plugged in (chapter 4), and fast on large ones (sections 1–3). The numbers
# differ only in the last digits, because the library keeps the scale $\sigma/\sqrt r$ in float32.
# (Adam's bias correction $1-\beta^k$ is float32 in both: the loop forms it as optax does,
# $1 - \mathrm{float32}(\beta)^k$ in float32, so that a JAX backend using optax gets the same bits.)

# %% [markdown]
# ## Summary
#
# - $x(W+\frac{\sigma}{\sqrt r}AB^\top)^\top = xW^\top + \frac{\sigma}{\sqrt r}(xB)A^\top$: one shared matmul
#   plus $O((I+O)r)$ per member, and $(I+O)r$ noise numbers instead of $IO$.
# - The roofline count: EggRoll adds $2r/D$ of the plain product's flops, while OpenES does all its
#   work at about $2T$ flops per number moved, memory-bound, and needs a $D\times D$ matrix per
#   member (it runs out of memory first). So EGGROLL approaches inference speed as layers grow;
#   this run's timings are printed in section 2.
# - The update is a sum of $N = P/2$ independent rank-$r$ terms (one per antithetic pair): full
#   rank once $Nr \ge \min(O,I)$.
# - The expected low-rank update converges to the Gaussian one like $1/r$ (fourth cumulants);
#   quadratics show no bias at all.
# - EGGROLL is these pieces together: about 40 lines of NumPy, and npegg computes the same numbers.
#
# ## Exercises
#
# Solutions, checked by the test suite: `tutorials/solutions/03_low_rank_perturbations.py`.
#
# 1. **The transposed layout.** Some layers store $W$ as $(I\times O)$ and compute $xW$
#    (`do_Tmm`). Derive the low-rank identity for $x\big(W + \frac{\sigma}{\sqrt r}AB^\top\big)$ with
#    $A\in\mathbb{R}^{I\times r}$, $B\in\mathbb{R}^{O\times r}$, and check it against the materialised matrix.
# 2. **Rank of the update at rank $r$.** Predict the rank of $\sum_n f_n\hat A_nB_n^\top$ for a
#    $50\times 40$ matrix, rank-3 perturbations and $P = 8, 16, 32$ members, and check it.
# 3. **The $1/r$ in one number.** Show that each entry of $AB^\top/\sqrt r$ (unit Gaussian factors)
#    has variance 1 and fourth moment $3 + 6/r$ (a Gaussian's is 3), and measure it for
#    $r = 1, 2, 4, 8$. This excess kurtosis $6/r$ is what section 4's bias is made of.
#
# 4. **One matmul.** Write the update of the from-scratch loop (section 5) as a Python loop over the $P$ members (a sum of
#    outer products $f_n\hat A_nB_n^\top$), check that it equals the one-matmul form, and count the
#    multiply-adds of each. Where does the speed of the matmul form come from, if not from fewer
#    operations?
#
#
# **Next**, chapter 4: how npegg organises all this — noisers, models, `es_map`, and noise that
# is rebuilt from a key instead of stored.

# %%
book.finish(FIGURES)
