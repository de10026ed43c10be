# %% [markdown]
# # Chapter 2 — Fitness shaping and optimizers
#
# Chapter 1 multiplied each perturbation by the raw value $F(\theta+\sigma\varepsilon)$ and
# stepped along the result. Real ES code does two more things, and this chapter explains both.
#
# **What you will learn.**
#
# 1. *Fitness shaping*: raw scores are replaced by z-scores, centered ranks, or the sign of an
#    antithetic pair's difference (`npegg.fitness`). What each one is invariant to, and what it
#    costs, measured on a clean and on a heavy-tailed, noisy objective.
# 2. *Groups*: the reference's grouped z-score (per-group mean, **global** variance) and a
#    surprise: with antithetic pairs it produces exactly the update of the plain z-score.
# 3. *The sign convention and the scale*: why npegg hands the optimizer
#    $G=-\sigma^2\sqrt P\,\hat g$ rather than $\hat g$, derived from `npegg/noiser/eggroll.py` and
#    checked against the library to float32 rounding.
# 4. *SGD vs Adam* (`npegg.optim`) on an ill-conditioned ES problem.
#
# Notation (chapter 1): $P$ members per generation, $N = P/2$ antithetic pairs; member $n$ has
# sign $s_n = +1$ for even $n$ and $-1$ for odd $n$, and members $2k, 2k+1$ share their noise.
#
# **Run it**: `python tutorials/02_fitness_and_optimizers.py` (or as a notebook). Figures go to
# `$NPEGG_TUTORIAL_OUT` (default `tutorials/figures/`); `NPEGG_TUTORIAL_SMALL=1` runs a small
# setting. The full setting took **31 s** on this machine (2 cores, heavily shared with other jobs).

# %%
import numpy as np

import _book as book

SMALL = book.choose_setting(None)  # None: NPEGG_TUTORIAL_SMALL decides; True = small (seconds), False = full
FIGURES = ["02_shapers.png", "02_sqrt_n.png", "02_sgd_vs_adam.png"]
plt = book.pyplot()
np.set_printoptions(precision=4, suppress=True)
rng = np.random.default_rng(2)

# %% [markdown]
# ## 0. The running example
#
# The logistic regression of chapter 1 again — fitness is the mean log-likelihood of
# $\theta\in\mathbb{R}^{20}$ — except that the 20 features now have scales from 0.1 to 10. The
# problem is the same up to a rescaling of coordinates, but it is *ill-conditioned*: the
# curvature along the largest feature is $10^4$ times that along the smallest, which matters for
# the optimizer in section 4. (Chapter 3 puts a matrix in place of the vector, and ends by
# writing the whole of EGGROLL from scratch.)

# %%
d, n_data = 20, 200
data_rng = np.random.default_rng(1)
feature_scale = np.logspace(-1, 1, d)                                   # 0.1 ... 10
X = data_rng.standard_normal((n_data, d)) * feature_scale               # (n, d)
theta_true = data_rng.standard_normal(d) / feature_scale
y = np.sign(X @ theta_true + 0.5 * data_rng.standard_normal(n_data))    # (n,) labels ±1


def softplus(z):
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def F(theta):
    """Mean log-likelihood; theta (..., d) -> (...)."""
    return -softplus(-(theta @ X.T) * y).mean(-1)


def grad_F(theta):
    m = (X @ theta) * y
    return (X * (y / (1 + np.exp(m)))[:, None]).mean(0)


def antithetic_eps(pairs, rng):
    """(2·pairs, d) noise in npegg's layout: member 2k gets +ε_k, member 2k+1 gets −ε_k."""
    e = rng.standard_normal((pairs, d))
    return np.stack([e, -e], axis=1).reshape(2 * pairs, d)


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


theta0 = np.zeros(d)
print(f"F(0) = {F(theta0):.4f} (= -log 2), F(theta_true) = {F(theta_true):.4f}")

# %%
from npegg import fitness                            # noqa: E402  (the library enters here)
from npegg.es import ES                              # noqa: E402
from npegg.models import Parameter                   # noqa: E402
from npegg.noise import NoiseTable                   # noqa: E402

# %%
TABLE = NoiseTable(seed=0)  # npegg's noise table (chapter 4): built once (32 MiB), shared by every run below

# %% [markdown]
# ## 1. Why shape fitness at all
#
# The estimate $\hat g = \frac{1}{P\sigma}\sum_n F_n\varepsilon_n$ (with $F_n = F(\theta+\sigma\varepsilon_n)$)
# is *linear in $F$*: double the fitness and the step doubles. Any fixed learning rate is then
# only right for one scale of $F$, and that scale changes as training goes (rewards grow,
# losses shrink). Shaping replaces the raw scores $R_n$ of one generation by numbers $f_n$
# whose scale is fixed. Three shapers, all in `npegg/fitness.py`, all of the form raw (P,) → (P,):
#
# | shaper | formula | invariant to |
# |---|---|---|
# | z-score | $f_n = (R_n-\bar R)/\sqrt{\mathrm{var}R + 10^{-5}}$ | $R\mapsto aR+b$, $a>0$ (up to the $10^{-5}$) |
# | centered ranks | $f_n = \mathrm{rank}(R_n)/(P-1) - \tfrac12 \in[-\tfrac12,\tfrac12]$ | any increasing $h(R)$ |
# | pair sign | $f_{2k} = \mathrm{sign}(R_{2k}-R_{2k+1}) = -f_{2k+1}$ | any increasing $h(R)$ |
#
# Check the invariances numerically on one generation:

# %%
eps = antithetic_eps(128, rng)                          # (P, d), P = 256
R = F(theta0 + 0.5 * eps)                               # (P,) raw scores
for name, h in (("10 R + 3", lambda r: 10 * r + 3), ("exp(20 R)", lambda r: np.exp(20 * r))):
    row = []
    for shaper in (fitness.zscore, fitness.centered_ranks, fitness.pair_sign):
        row.append(np.abs(shaper(h(R)) - shaper(R)).max())
    print(f"R -> {name:10s}: max change of  z-score {row[0]:.1e}   ranks {row[1]:.1e}   pair sign {row[2]:.1e}")
print(f"raw estimate scales by {np.linalg.norm((10 * R + 3) @ eps) / np.linalg.norm(R @ eps):.1f} under R -> 10 R + 3")

# %% [markdown]
# The tiny z-score change under $10R+3$ comes from the $10^{-5}$ in the denominator; under
# $e^{20R}$ the z-scores change completely, ranks and signs not at all.
#
# ### What pair sign estimates
#
# Pair sign keeps one bit per pair: which of $\theta\pm\sigma\varepsilon$ was better. For small
# $\sigma$ that bit is $\mathrm{sign}(g^\top\varepsilon)$, and its expectation has a closed form.
# Split $\varepsilon = z\,u + \varepsilon_\perp$ with $u = g/\lVert g\rVert$ and $z=u^\top\varepsilon\sim\mathcal N(0,1)$
# independent of $\varepsilon_\perp$:
# $$\mathbb{E}[\mathrm{sign}(g^\top\varepsilon)\,\varepsilon] = \mathbb{E}[\mathrm{sign}(z)\,z]\,u + \mathbb{E}[\mathrm{sign}(z)]\,\mathbb{E}[\varepsilon_\perp]
#  = \mathbb{E}|z|\,u = \sqrt{2/\pi}\;\frac{g}{\lVert g\rVert}.$$
# So pair sign estimates the *direction* of the gradient with a fixed length — a normalised
# gradient method, blind to how large the improvement was. (Chapter 8's integer Q-EGGROLL uses it.)

# %%
g0 = grad_F(theta0)
E = rng.standard_normal((book.setting(100_000, 1_000_000), d))
est = (np.sign(E @ g0)[:, None] * E).mean(0)
print(f"E[sign(g.e) e]: |mean| = {np.linalg.norm(est):.4f} (sqrt(2/pi) = {np.sqrt(2 / np.pi):.4f}), "
      f"cosine with g = {cosine(est, g0):.5f}")

# %% [markdown]
# ### Which shaper estimates the gradient best?
#
# The quantity that matters for an optimiser is the *direction* of one generation's estimate,
# so we measure the cosine between $\hat g$ and the true gradient, averaged over many generations,
# for three versions of the same problem:
#
# - **clean**: $R = F$;
# - **heavy-tailed noise**: $R = F + 0.05\,t_{1.5}$, a Student-t noise with infinite variance, as
#   episodic returns in reinforcement learning often have;
# - **exp transform**: $R = e^{20F}$, the same ordering as $F$ on a wildly stretched scale.
#
# Antithetic noise throughout ($P=256$ members, $\sigma=0.05$).

# %%
def estimate(f, eps, sigma):
    """ĝ from shaped fitness f (P,) and noise eps (P, d) (members 2k, 2k+1 carry ±ε_k)."""
    return f @ eps / (len(f) * sigma)


shapers = {"raw": lambda r: r, "z-score": fitness.zscore, "ranks": fitness.centered_ranks,
           "pair sign": fitness.pair_sign}
problems = {"clean": lambda r, rng: r,
            "heavy-tailed noise": lambda r, rng: r + 0.05 * rng.standard_t(1.5, r.shape),
            "exp transform": lambda r, rng: np.exp(20 * r)}
trials = book.setting(40, 400)
sigma = 0.05
cos_table = {}
for pname, noisy in problems.items():
    cs = {s: [] for s in shapers}
    for _ in range(trials):
        eps = antithetic_eps(128, rng)
        R = noisy(F(theta0 + sigma * eps), rng)
        for sname, shaper in shapers.items():
            cs[sname].append(cosine(estimate(shaper(R), eps, sigma), g0))
    cos_table[pname] = {s: (np.mean(v), np.std(v) / np.sqrt(trials)) for s, v in cs.items()}
print(f"{'mean cosine(ĝ, ∇F)':24s}" + "".join(f"{s:>12s}" for s in shapers))
for pname, row in cos_table.items():
    print(f"{pname:24s}" + "".join(f"{row[s][0]:12.3f}" for s in shapers))
# the comparisons the next paragraph makes (each mean cosine is known to a few standard errors)
ct = {p: {k: v[0] for k, v in row.items()} for p, row in cos_table.items()}
assert abs(ct["clean"]["raw"] - ct["clean"]["z-score"]) < 1e-9        # the same direction, always
assert ct["clean"]["z-score"] > ct["clean"]["ranks"] > ct["clean"]["pair sign"]
assert min(ct["heavy-tailed noise"]["ranks"], ct["heavy-tailed noise"]["pair sign"]) > ct["heavy-tailed noise"]["z-score"]
assert ct["exp transform"]["ranks"] > ct["exp transform"]["z-score"]

# %%
if plt:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    w = 0.2
    for i, s in enumerate(shapers):
        vals = [cos_table[p][s][0] for p in problems]
        errs = [cos_table[p][s][1] for p in problems]
        ax.bar(np.arange(len(problems)) + (i - 1.5) * w, vals, w, yerr=errs, label=s)
    ax.set_xticks(range(len(problems)), list(problems))
    ax.set(ylabel="mean cosine(ĝ, ∇F)", ylim=(0.5, 1.0), title="One generation's estimate, P = 256, σ = 0.05")
    ax.legend(ncol=4, fontsize=8, loc="upper center")
    book.save(fig, "02_shapers.png")

# %% [markdown]
# Raw scores and z-scores always give the *same direction*: a z-score is an affine map of the
# raw scores with a positive slope, and the shift cancels between antithetic partners (more on
# that in section 2). On the clean problem ranks and signs lose a little, because they throw
# away *how much* better a member was. With heavy-tailed noise one lucky sample dominates a raw
# or z-scored sum, and the rank-based shapers win clearly. Under the exponential the raw and
# z-scored estimates lose accuracy (the few most extreme members get most of the weight), while
# ranks and signs see exactly the fitnesses of the clean problem. That is the trade: z-scores
# keep magnitudes, ranks and signs buy robustness. The reference float EggRoll uses z-scores.
#
# ## 2. Groups: per-group mean, global variance
#
# In the seed notebook's regression (chapter 5) the 4096 members come in 32 *groups* of 128, and
# each group is scored on a different training point. Points differ wildly in difficulty, so
# raw scores differ between groups for reasons that have nothing to do with the perturbations.
# The reference therefore subtracts a **per-group** mean — but divides by the **global** standard
# deviation of all $P$ scores:
# $$f_n = \frac{R_n - \bar R_{\mathrm{group}(n)}}{\sqrt{\mathrm{var}(R) + 10^{-5}}} .$$
# (`fitness.zscore(raw, group_size)`; npegg keeps the quirk for parity.) Now a surprise. In the
# update each fitness multiplies its member's signed noise, and antithetic partners $2k, 2k+1$
# sit in the same group (groups have even size). Adding any constant $c$ to all fitnesses of a
# group adds $c\sum_{n\in\text{group}} s_n\varepsilon_n = c\sum_k(\varepsilon_k-\varepsilon_k) = 0$
# to the update. So the per-group mean **cancels exactly**, and the grouped z-score gives the same
# update as the global one. Let's check with npegg on a toy regression where each of 32 groups
# sees its own data point with a very different target:

# %%
def step_G(es, state, raw):
    """The update G that raw scores (P,) give, read off one step of plain SGD with lr = 1.

    `ES.create` uses SGD unless told otherwise, and SGD's step is θ ← θ − lr·G (section 3), so with
    lr = 1 the step is −G itself. (Chapter 4 opens the noiser interface behind `es.step`: its
    `do_updates` forms G and hands it to the optimizer.)
    """
    return state.params - es.step(state, raw).params


P, group = 512, 16
pts = rng.standard_normal((P // group, d)) / feature_scale           # one data point per group
targets = 10 * rng.standard_normal(P // group)                       # very different difficulties
x_of_member = np.repeat(pts, group, axis=0)                          # (P, d)
t_of_member = np.repeat(targets, group)                              # (P,)
theta_start = rng.standard_normal(d)
G, f_std = {}, {}
for gs in (0, group):
    es, state = ES.create(Parameter, dict(raw_value=theta_start), pop_size=P, sigma=0.1, lr=1.0,
                          group_size=gs, seed=3, noise=TABLE)
    thetas = es.forward(state)                                        # (P, d): member n's parameters
    raw = -((thetas * x_of_member).sum(1) - t_of_member) ** 2         # (P,)
    f = es.fitness(state, raw)                                        # the shaped fitnesses step uses
    G[gs] = step_G(es, state, raw)
    f_std[gs] = f.std()
    print(f"group_size = {gs:2d}: std of the fitnesses {f.std():.4f}")
print(f"max |G(grouped) - G(global)| = {np.abs(G[group] - G[0]).max():.1e}  (|G| = {np.linalg.norm(G[0]):.3f})")
book.check("max |G(grouped) - G(global)| / |G|", np.abs(G[group] - G[0]).max() / np.linalg.norm(G[0]), 0, 1e-6)
book.check("std of the grouped fitnesses", f_std[group], 0.21, 0.03)

# %% [markdown]
# Identical updates (up to float rounding), even though the grouped fitnesses look five times
# smaller (standard deviation 0.21 instead of 1): their spread is
# measured against the global variance, which is dominated by the differences *between* data
# points. What groups would change is a per-group *variance*: that would reweight the data
# points (each group's fitness normalised to unit spread), a different estimator. With the
# reference's convention the only thing that matters is the global denominator — which sets the
# step size, and which the between-group spread inflates.
#
# ## 3. What the optimizer is handed: sign and scale
#
# Optimizers in the optax tradition (`npegg.optim`: `sgd`, `adam`, `adamw`) *minimise*: given
# a gradient tree $G$ they return updates, and plain SGD returns $-\mathrm{lr}\cdot G$. ES
# *maximises* fitness. So the noiser hands the optimizer the gradient of $-F$: the negative of
# the estimate. From the docstring of `npegg/noiser/eggroll.py`, with $\hat A_n = s_n\sigma A_n/\sqrt r$
# the factors that already carry sign and $\sigma$:
# $$G = -\sqrt P\cdot\frac1P\sum_n f_n\,\hat A_n B_n^\top = -\frac{\sigma}{\sqrt P}\sum_n f_n\,\varepsilon_n,
#   \qquad \varepsilon_n = s_n A_nB_n^\top/\sqrt r,$$
# and for a plain vector (a `PARAM` leaf) the same with $\varepsilon_n = s_n e_n$. Comparing with the
# textbook estimate $\hat g = \frac{1}{P\sigma}\sum_n f_n\varepsilon_n$:
# $$\boxed{G = -\sigma^2\sqrt P\;\hat g}\qquad\Longrightarrow\qquad \text{SGD: } \theta \leftarrow \theta - \mathrm{lr}\,G = \theta + \mathrm{lr}\,\sigma^2\sqrt P\,\hat g .$$
# Nothing divides by $\sigma$ (the reference's choice). Check both statements against the
# library: rebuild each member's $\varepsilon_n$ from its perturbed parameters, form $\hat g$ by hand, and
# compare with the step `es.step` takes, which for SGD is $-\mathrm{lr}\,G$ (so $G$ is read off it).

# %%
P, sig, lr = 256, 0.3, 0.02
es, state = ES.create(Parameter, dict(raw_value=theta0), pop_size=P, sigma=sig, lr=lr, seed=5, noise=TABLE)
thetas = es.forward(state)                              # (P, d)
eps_n = (thetas - theta0) / sig                         # (P, d): s_n e_n, rebuilt from the members
f = es.fitness(state, F(thetas))                        # (P,) z-scores
g_hat = f @ eps_n / (P * sig)                           # the textbook estimate
new = es.step(state, F(thetas))
G_lib = (theta0 - new.params) / lr                      # SGD: θ_new = θ − lr·G
print(f"max |G_lib - (-sigma^2 sqrt(P) g_hat)|       = {np.abs(G_lib + sig**2 * np.sqrt(P) * g_hat).max():.1e}"
      f"   (|G| = {np.linalg.norm(G_lib):.3f})")
print(f"max |step - lr sigma^2 sqrt(P) g_hat|          = "
      f"{np.abs((new.params - theta0) - lr * sig**2 * np.sqrt(P) * g_hat).max():.1e}")
print(f"cosine(step, true gradient) = {cosine(new.params - theta0, grad_F(theta0)):.3f}: the step climbs F "
      f"({F(theta0):.4f} -> {F(new.params):.4f})")
book.check("max |G_lib + sigma^2 sqrt(P) g_hat| / |G|",
           np.abs(G_lib + sig**2 * np.sqrt(P) * g_hat).max() / np.linalg.norm(G_lib), 0, 1e-6)   # float32 rounding
assert F(new.params) > F(theta0)

# %% [markdown]
# ### Why $\sqrt P$?
#
# Split $\sum_n f_n\varepsilon_n$ into signal and noise. Partners share their noise with opposite
# signs, so the sum is really over the $N = P/2$ pairs: $\sum_n f_n\varepsilon_n = \sum_k (f_{2k}-f_{2k+1})\,\varepsilon_k$.
# If $f$ carried no information (independent of the $\varepsilon_k$),
# $$\mathbb{E}\Big\lVert\sum_k (f_{2k}-f_{2k+1})\,\varepsilon_k\Big\rVert^2 = \sum_k (f_{2k}-f_{2k+1})^2\, d \approx 2N\cdot d = Pd,$$
# because z-scores have mean square 1 and unrelated partners' z-scores differ by a mean square of
# about 2. (Not $\sum_n f_n^2\,d$: that would treat the two partners' noise as independent.) So
# the noise part of $G$ has norm $\frac{\sigma}{\sqrt P}\sqrt{Pd} = \sigma\sqrt d$, **whatever $P$ is**.
# The signal part, $P$ times a fixed mean divided by $\sqrt P$, grows like $\sqrt P$. So with the
# $\sqrt P$ convention a given learning rate moves the parameters by a noise "jitter" that does
# not depend on the population, and a bigger population buys a bigger *useful* step: the
# signal-to-noise ratio grows like $\sqrt P$. Measured:

# %%
sqrt_rows = []
u = -grad_F(theta0) / np.linalg.norm(grad_F(theta0))        # G should point down the fitness
for P in [64, 256, 1024, 4096, book.setting(8192, 16384)]:
    noise2, signal = [], []
    for seed in range(book.setting(4, 10)):                 # a fresh noise draw per seed (`draws` below)
        es, state = ES.create(Parameter, dict(raw_value=theta0), pop_size=P, sigma=sig, lr=1.0, seed=seed,
                              noise=TABLE)
        noise2.append(np.sum(step_G(es, state, rng.standard_normal(P)) ** 2))          # unrelated scores
        signal.append(step_G(es, state, F(es.forward(state))) @ u)                     # the real fitness
    sqrt_rows.append((P, np.sqrt(np.mean(noise2)), np.mean(signal)))
print(f"sigma sqrt(d) = {sig * np.sqrt(d):.3f}")
print(f"{'P':>6} {'|G|, random f (RMS)':>21} {'G along -grad':>14} {'/ sqrt(P)':>10}")
for P, noise, signal in sqrt_rows:
    print(f"{P:6d} {noise:21.3f} {signal:14.3f} {signal / np.sqrt(P):10.4f}")
# the squared norm of one draw has relative spread sqrt(2/d); its RMS over k draws has relative
# standard error (1/2) sqrt(2/(d k)): allow three of those
draws = book.setting(4, 10)
for P, noise, signal in sqrt_rows:
    book.check(f"|G| with random fitness / (sigma sqrt(d)), P = {P}", noise / (sig * np.sqrt(d)), 1,
               3 * 0.5 * np.sqrt(2 / (d * draws)))
per_root = [r[2] / np.sqrt(r[0]) for r in sqrt_rows]
book.check("spread of (signal / sqrt(P)) across P, relative", np.ptp(per_root) / np.mean(per_root), 0, 0.25)

# %%
if plt:
    Ps = np.array([r[0] for r in sqrt_rows])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.loglog(Ps, [r[1] for r in sqrt_rows], "o-", label="‖G‖ with random fitness (noise)")
    ax.loglog(Ps, [r[2] for r in sqrt_rows], "s-", label="component of G along −∇F (signal)")
    ax.axhline(sig * np.sqrt(d), color="k", ls=":", label="σ√d")
    ax.loglog(Ps, sqrt_rows[0][2] * np.sqrt(Ps / Ps[0]), "k--", label="∝ √P")
    ax.set(xlabel="population P", ylabel="norm", title="G = −σ²√P ĝ: constant noise, signal ∝ √P")
    ax.legend(fontsize=8)
    book.save(fig, "02_sqrt_n.png")

# %% [markdown]
# ## 4. SGD vs Adam on an ES problem
#
# The optimizer sees only $G$; it does not know $G$ came from ES. So everything known about
# optimizers applies, including the main reason to prefer Adam: it divides each coordinate of the
# step by a running RMS of that coordinate's gradient,
# with $k$ the step number (1, 2, …),
# $$m \leftarrow \beta_1 m + (1-\beta_1)G,\qquad v \leftarrow \beta_2 v + (1-\beta_2)G^2,\qquad
#   \hat m = \frac{m}{1-\beta_1^k},\qquad \hat v = \frac{v}{1-\beta_2^k},\qquad
#   \theta \leftarrow \theta - \mathrm{lr}\,\frac{\hat m}{\sqrt{\hat v}+\epsilon}$$
# ($\beta_1=0.9$, $\beta_2=0.999$, $\epsilon=10^{-8}$: `npegg.optim.adam`, with optax's defaults).
# $m$ and $v$ start at zero, so after $k$ steps they are averages whose weights sum to only
# $1-\beta^k$: at step 1, $m = 0.1\,G$. Dividing by $1-\beta^k$ removes that bias toward zero
# (the correction fades as $\beta^k\to0$). $\hat m/\sqrt{\hat v}$ is then about $\pm1$ per
# coordinate, so every coordinate moves by about lr, whatever the scale of $G$. SGD's step is $-\mathrm{lr}\,G$: its largest stable learning rate is set by the stiffest
# direction, and the flat directions then crawl. Our features span two orders of magnitude, so
# the curvatures span four. (Adam is also invariant to the overall scale of $G$, so the
# $\sigma^2\sqrt P$ factor only matters for SGD.)
#
# Below, the same ES (npegg's `ES` loop on a bare `Parameter` — chapter 4 explains the pieces;
# $P=256$, $\sigma=0.05$, z-scores) with each optimizer at three learning rates.

# %%
def train(solver, lr, epochs, P=256, sigma=0.05, seed=0):
    es, state = ES.create(Parameter, dict(raw_value=np.zeros(d)), pop_size=P, sigma=sigma, lr=lr,
                          solver=solver, seed=seed, noise=TABLE)
    curve = []
    for _ in range(epochs):
        thetas = es.forward(state)                 # (P, d)
        state = es.step(state, F(thetas))          # z-scores -> G -> optimizer
        curve.append(-F(state.params))            # loss = -fitness, lower is better
    return np.array(curve)


epochs = book.setting(60, 300)
runs = {("sgd", lr): train("sgd", lr, epochs) for lr in (0.1, 0.3, 1.0)}
runs.update({("adam", lr): train("adam", lr, epochs) for lr in (0.03, 0.1, 0.3)})
for (solver, lr), c in runs.items():
    print(f"{solver:4s} lr={lr:<5}: loss after 10 epochs {c[9]:8.4f}, after {epochs}: {c[-1]:8.4f}")
best = {s: min(c[-1] for (s2, _), c in runs.items() if s2 == s) for s in ("sgd", "adam")}
print(f"best final loss: SGD {best['sgd']:.4f}, Adam {best['adam']:.4f}  (start {np.log(2):.4f})")
assert best["adam"] < best["sgd"]                                   # "Adam reaches a lower loss than any SGD run"
assert runs["sgd", 1.0].max() > 2 * np.log(2)                       # "SGD at lr = 1 ... jumps far above log 2" 

# %%
if plt:
    fig, ax = plt.subplots(figsize=(7, 4))
    for (solver, lr), c in runs.items():
        ax.semilogy(c, ls="-" if solver == "adam" else "--", label=f"{solver}, lr = {lr}")
    ax.set(xlabel="epoch", ylabel="loss = −F (log scale)", ylim=(None, 3),
           title="ES on an ill-conditioned problem: SGD vs Adam")
    ax.legend(fontsize=8, ncol=2)
    book.save(fig, "02_sgd_vs_adam.png")

# %% [markdown]
# SGD at lr = 1 is unstable (the loss jumps far above its starting value $\log 2$: the stiff
# coordinates overshoot), and at the stable learning rates it is slow. Adam reaches a lower loss
# than any SGD run. On the seed notebook's regression (chapter 5) the reference nevertheless uses
# plain SGD with a decaying learning rate; the notebook suggests trying others as an exercise.
#
# ## Summary
#
# - Shape fitness so the step size does not depend on the scale of $F$: z-scores keep
#   magnitudes; centered ranks and pair signs are invariant to any increasing transform and
#   robust to outliers.
# - The reference's grouped z-score (per-group mean, global variance) gives exactly the update of
#   the global z-score, because antithetic partners share a group.
# - npegg hands the optimizer $G=-\sigma^2\sqrt P\,\hat g$: negative because optimizers minimise,
#   $\sqrt P$ so that the noise in the step does not depend on the population.
# - The optimizer is an ordinary optimizer; Adam's per-coordinate scaling helps ES on badly
#   scaled problems just as it helps backprop.
#
# ## Exercises
#
# Solutions, checked by the test suite: `tutorials/solutions/02_fitness_and_optimizers.py`.
#
# 1. **Why Adam corrects its bias.** Remove the two divisions by $1-\beta^k$ from Adam
#    (section 4). By what factor is the very first step too large or too small, per
#    coordinate? (Work it out for $G$ of any scale, then measure it.)
# 2. **A constant in the fitness.** Show that adding the same constant $c$ to every fitness
#    leaves the antithetic update unchanged, exactly, but changes the update of a population
#    whose $P$ members draw *independent* noise. Measure both with random fitnesses and noise
#    ($P = 64$, $d = 10$).
# 3. **A generation with no information.** When every member scores the same (a flat region, or a
#    broken score), show that all three shapers return zero fitnesses, so `es.step` leaves the
#    parameters exactly as they were. What would centered ranks that broke ties by member order
#    do instead?
#
# **Next**, chapter 3: matrices, and the low-rank perturbations that make ES cheap enough for
# large networks — ending with the whole of EGGROLL written from scratch.

# %%
book.finish(FIGURES)
