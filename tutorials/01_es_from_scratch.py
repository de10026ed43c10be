# %% [markdown]
# # Chapter 1 — Evolution strategies from scratch
#
# **What you will learn.** How to climb a function you can only *evaluate*, never differentiate:
#
# 1. *Gaussian smoothing*: ES does not optimise $F$ but a blurred copy $F_\sigma$, and the blur
#    removes small bumps (we compute by how much).
# 2. The *score-function gradient* $\nabla F_\sigma(\theta) = \mathbb{E}[F(\theta+\sigma\varepsilon)\,\varepsilon]/\sigma$,
#    derived in three lines and checked against the exact answer.
# 3. *Antithetic sampling* (evaluate $\theta+\sigma\varepsilon$ and $\theta-\sigma\varepsilon$):
#    why it removes most of the estimator's variance, with the variances measured.
# 4. How fast the ES estimate approaches the true gradient (central finite differences) as the
#    population grows: like $1/\sqrt{N}$, down to a floor set by $\sigma$.
# 5. The *scaling law* of ES — relative error $\sqrt{(d+1)/N}$, cosine to the gradient
#    $(1+(d+1)/N)^{-1/2}$ — measured over $d$ and $N$, and why ES still trains when the
#    dimension $d$ is far larger than the population.
#
# Everything here is raw NumPy: no npegg yet. Randomness comes from a *local* generator,
# `np.random.default_rng(seed)`, never NumPy's global state, so every number below is reproducible.
#
# **Run it**: `python tutorials/01_es_from_scratch.py` (or open it as a notebook). Figures go to
# `$NPEGG_TUTORIAL_OUT` (default `tutorials/figures/`); `NPEGG_TUTORIAL_SMALL=1` runs a small
# setting in a few seconds. The full setting took **3 min 7 s** on this machine (2 cores, heavily shared with other jobs).

# %%
import math
import time

import numpy as np

import _book as book

SMALL = book.choose_setting(None)  # None: NPEGG_TUTORIAL_SMALL decides; True = small (seconds), False = full
FIGURES = ["01_smoothing.png", "01_variance.png", "01_es_vs_fd.png", "01_scaling_law.png", "01_escape.png"]
plt = book.pyplot()
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. The problem, and the blurred problem
#
# We want to *maximise* $F:\mathbb{R}^d\to\mathbb{R}$ (ES people say *fitness*; a loss is just
# $-F$). We may evaluate $F$ anywhere, as often as we like, and in parallel — but we get no
# gradient: $F$ may be a simulator, an integer-only network, or a reward that is 0 or 1.
#
# ES replaces $F$ by its **Gaussian smoothing**
# $$F_\sigma(\theta) \;=\; \mathbb{E}_{\varepsilon\sim\mathcal N(0,I_d)}\big[F(\theta+\sigma\varepsilon)\big],$$
# the average of $F$ over a cloud of radius $\sigma$ around $\theta$. Two facts make this useful:
# $F_\sigma$ is smooth even when $F$ is not, and wiggles narrower than $\sigma$ average out.
#
# A one-dimensional example where everything is exact: $F(x) = -0.1\,x^2 + \cos 3x$. Using
# $\mathbb{E}[\varepsilon^2]=1$ and $\mathbb{E}[\cos(a+b\varepsilon)] = \cos(a)\,e^{-b^2/2}$
# (the characteristic function of a Gaussian),
# $$F_\sigma(x) = -0.1\,(x^2+\sigma^2) + e^{-9\sigma^2/2}\cos 3x .$$
# The bumps shrink by $e^{-9\sigma^2/2}$. When do they disappear, leaving $F_\sigma$ a single
# maximum? A *sufficient* condition is easy: $F_\sigma$ is concave everywhere once the curvature
# of the bumps, $9e^{-9\sigma^2/2}$, falls below that of the bowl, $0.2$, i.e. for
# $\sigma > \sqrt{2\ln(45)/9} \approx 0.92$. But concavity is more than we need: a side bump
# can lose its own maximum while $F_\sigma$ is still convex in places. So count the local maxima
# on a fine grid, and find by bisection the smallest σ from which only one is left.

# %%
def F1(x):
    return -0.1 * x**2 + np.cos(3 * x)


def F1_smooth(x, sigma):
    """Exact Gaussian smoothing of F1."""
    return -0.1 * (x**2 + sigma**2) + np.exp(-4.5 * sigma**2) * np.cos(3 * x)


def F1_smooth_grad(x, sigma):
    return -0.2 * x - 3 * np.exp(-4.5 * sigma**2) * np.sin(3 * x)


grid = np.linspace(-8, 8, 16001)                       # spacing 0.001


def count_maxima(sigma):
    """Local maxima of F_sigma on the grid (interior points above both neighbours)."""
    v = F1_smooth(grid, sigma)
    return int(np.sum((v[1:-1] > v[:-2]) & (v[1:-1] > v[2:])))


sigma_concave = np.sqrt(2 * np.log(45) / 9)
lo, hi = 0.0, sigma_concave                            # count_maxima(lo) > 1, count_maxima(hi) == 1
for _ in range(30):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if count_maxima(mid) > 1 else (lo, mid)
sigma_single = hi
sigmas_1d = [0.0, 0.3, 0.6, 1.0]
for s in sigmas_1d:
    print(f"sigma = {s:.1f}: bump amplitude {np.exp(-4.5 * s * s):.3f}, local maxima on [-8, 8]: {count_maxima(s)}")
print(f"F_sigma is concave for sigma > {sigma_concave:.3f}; it has a single maximum already for sigma > {sigma_single:.3f}")
book.check("sigma from which F_sigma is concave", sigma_concave, 0.92, 0.005)     # rounding of the text
book.check("sigma from which F_sigma has one maximum", sigma_single, 0.71, 0.005)  # grid spacing 0.001 + rounding
assert count_maxima(0.6) > 1 and all(count_maxima(s) == 1 for s in np.linspace(sigma_single + 1e-3, 1.2, 50))

# %% [markdown]
# One maximum from $\sigma \approx 0.71$ on, while concavity needs $\sigma > 0.92$: in between,
# $F_\sigma$ still has dents (places where it curves up) but no second peak. The property an
# optimiser cares about is the count of maxima, not concavity.
#
# %% [markdown]
# Is the formula right? Monte Carlo says yes: average $F$ over a million Gaussian samples.

# %%
rng = np.random.default_rng(0)
x0, s = 2.0, 0.6
samples = F1(x0 + s * rng.standard_normal(book.setting(200_000, 1_000_000)))
print(f"F_sigma(2.0), sigma=0.6: exact {F1_smooth(x0, s):.5f}, Monte Carlo {samples.mean():.5f} "
      f"± {samples.std() / np.sqrt(samples.size):.5f}")

# %%
if plt:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for s in sigmas_1d:
        ax.plot(grid, F1_smooth(grid, s), label=f"$F_\\sigma$, $\\sigma$={s}" if s else "$F$ itself")
    ax.set(xlabel="x", ylabel="fitness", title="Gaussian smoothing removes bumps narrower than σ")
    ax.legend()
    book.save(fig, "01_smoothing.png")

# %% [markdown]
# ## 2. The gradient of the blur needs only evaluations of $F$
#
# Write the expectation as an integral over the perturbed point $x=\theta+\sigma\varepsilon$,
# whose density is $p(x\mid\theta)\propto \exp(-\lVert x-\theta\rVert^2/2\sigma^2)$:
# $$F_\sigma(\theta) = \int F(x)\,p(x\mid\theta)\,dx .$$
# Only $p$ depends on $\theta$, and $\nabla_\theta\, p(x\mid\theta) = p(x\mid\theta)\,(x-\theta)/\sigma^2$. So
# $$\nabla F_\sigma(\theta) = \int F(x)\,p(x\mid\theta)\,\frac{x-\theta}{\sigma^2}\,dx
#   = \frac{1}{\sigma}\,\mathbb{E}_{\varepsilon}\big[F(\theta+\sigma\varepsilon)\,\varepsilon\big].$$
# This is the *score-function* (or log-likelihood-ratio, REINFORCE) gradient. $F$ is never
# differentiated: it may be discontinuous, noisy, or integer-valued. Replacing the expectation by
# an average over a **population** of $P$ members (samples) gives the ES estimate
# $$\hat g = \frac{1}{P\sigma}\sum_{n=1}^{P} F(\theta+\sigma\varepsilon_n)\,\varepsilon_n .$$
# It is unbiased for $\nabla F_\sigma$ — not for $\nabla F$; the two differ by $O(\sigma^2)$ for smooth $F$.
#
# Check in one dimension, where we know $\nabla F_\sigma$ exactly:

# %%
P_mc = book.setting(200_000, 2_000_000)
eps = rng.standard_normal(P_mc)
terms = F1(x0 + s * eps) * eps / s                     # (P,) one term per population member
se = terms.std() / np.sqrt(P_mc)
print(f"dF_sigma/dx at 2.0: exact {F1_smooth_grad(x0, s):.4f}, "
      f"ES estimate {terms.mean():.4f} ± {se:.4f} (P = {P_mc:,})")
assert abs(terms.mean() - F1_smooth_grad(x0, s)) < 4 * se      # unbiased: within 4 standard errors

# %% [markdown]
# ### A real problem in $d$ dimensions, slow version first
#
# From here on the running example is a small logistic regression: 200 points in
# $\mathbb{R}^{20}$ with labels $y_i=\pm1$, and the fitness is the mean log-likelihood
# $$F(\theta) = \frac{1}{200}\sum_i \log \mathrm{sigmoid}(y_i\, x_i^\top\theta).$$
# It is smooth and not quadratic, and its exact gradient
# $\nabla F = \frac{1}{200}\sum_i \mathrm{sigmoid}(-y_i x_i^\top\theta)\, y_i x_i$ lets us check everything.
# `F` takes parameters of shape $(\ldots, d)$ so that a whole population is one call.

# %%
d, n_data = 20, 200
data_rng = np.random.default_rng(1)
X = data_rng.standard_normal((n_data, d))                             # (n, d)
theta_true = data_rng.standard_normal(d)
y = np.sign(X @ theta_true + 0.5 * data_rng.standard_normal(n_data))  # (n,) labels ±1
theta0 = 0.3 * data_rng.standard_normal(d)                            # where we estimate gradients


def softplus(z):
    """log(1 + e^z), computed without overflow."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def F(theta):
    """Mean log-likelihood; theta (..., d) -> (...)."""
    margins = (theta @ X.T) * y                      # (..., n)
    return -softplus(-margins).mean(-1)              # log sigmoid(m) = -log(1 + e^-m)


def grad_F(theta):
    margins = (X @ theta) * y                        # (n,)
    return (X * (y / (1 + np.exp(margins)))[:, None]).mean(0)   # (d,)


def es_grad_loop(F, theta, sigma, eps):
    """The obvious version: one population member at a time."""
    g = np.zeros_like(theta)
    for e in eps:
        g += F(theta + sigma * e) * e
    return g / (len(eps) * sigma)


def es_grad(F, theta, sigma, eps):
    """The same sum, vectorised: eps (N, d) -> (d,)."""
    fit = F(theta + sigma * eps)                     # (N,): the whole population in one call
    return fit @ eps / (len(eps) * sigma)


def best_time(fn, repeats=3):
    """Fastest of a few runs (the machine is shared, so the minimum is the fair number)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


eps = rng.standard_normal((4000, d))                 # (N, d)
t_loop, g_loop = best_time(lambda: es_grad_loop(F, theta0, 0.1, eps))
t_vec, g_vec = best_time(lambda: es_grad(F, theta0, 0.1, eps))
print(f"loop {1e3 * t_loop:.1f} ms, vectorised {1e3 * t_vec:.1f} ms ({t_loop / t_vec:.1f}x faster); "
      f"max difference {np.abs(g_loop - g_vec).max():.1e}")
print(f"|true gradient| = {np.linalg.norm(grad_F(theta0)):.4f}, "
      f"|ES estimate - true| = {np.linalg.norm(g_vec - grad_F(theta0)):.4f}  (N = 4000: still noisy)")

# %% [markdown]
# Same numbers, up to rounding. The speed-up is modest here because most of the time goes into
# the `exp`/`log` inside $F$ itself, not into Python's loop; it becomes large when the population
# axis turns many small matrix-vector products into one matrix-matrix product (chapter 3).
#
# The estimate is right on average but noisy: with 4000 evaluations its error is larger than the
# gradient itself. Where does that noise come from?
#
# ## 3. Antithetic sampling
#
# Expand $F$ around $\theta$, with $g=\nabla F(\theta)$ and $H$ the Hessian:
# $F(\theta+\sigma\varepsilon) = F(\theta) + \sigma g^\top\varepsilon + \tfrac{\sigma^2}{2}\varepsilon^\top H\varepsilon + O(\sigma^3)$.
# One term of the plain estimate is then
# $$\frac{F(\theta+\sigma\varepsilon)\,\varepsilon}{\sigma}
#   = \underbrace{\frac{F(\theta)}{\sigma}\,\varepsilon}_{\text{mean }0,\ \text{variance } F(\theta)^2 d/\sigma^2}
#   + \underbrace{(g^\top\varepsilon)\,\varepsilon}_{\text{mean } g} + \tfrac{\sigma}{2}(\varepsilon^\top H\varepsilon)\,\varepsilon + \dots$$
# The first term carries no information but dominates the variance, and it *grows* as
# $\sigma\to0$. Two cures:
#
# - **A baseline.** Use $F(\theta+\sigma\varepsilon)-F(\theta)$ instead of $F(\theta+\sigma\varepsilon)$: the
#   mean is unchanged (because $\mathbb{E}\varepsilon=0$) and the constant term is gone. One extra
#   evaluation, shared by the whole population. (Chapter 2's fitness shaping subtracts the
#   population's mean score, which is the same idea.)
# - **Antithetic (mirrored) pairs.** Evaluate both $\theta\pm\sigma\varepsilon$ and use
#   $$\frac{F(\theta+\sigma\varepsilon)-F(\theta-\sigma\varepsilon)}{2\sigma}\,\varepsilon
#     = (g^\top\varepsilon)\,\varepsilon + O(\sigma^2).$$
#   *Every* even-order term of the expansion cancels exactly: the constant, the Hessian term,
#   the fourth-order term.
#
# What is left in both cases, for small $\sigma$, is $(g^\top\varepsilon)\varepsilon$, whose total
# variance (summed over the $d$ coordinates) is
# $\mathbb{E}\lVert(g^\top\varepsilon)\varepsilon\rVert^2-\lVert g\rVert^2 = (d+1)\lVert g\rVert^2$,
# using $\mathbb{E}[(g^\top\varepsilon)^2\lVert\varepsilon\rVert^2]=(d+2)\lVert g\rVert^2$.
#
# A fair comparison counts *evaluations of $F$*. With a budget of $2K$ evaluations the plain and
# baseline estimates average $2K$ terms, the antithetic one $K$ pairs; so we compare
# (variance of one term) × (evaluations per term): 1 for plain and baseline, 2 for a pair.
# (npegg stores a pair as population members $2k$ and $2k+1$.)
#
# **Notation for the rest of the book**: $P$ is the population, the number of members, i.e. of
# evaluations of $F$ per generation; $N=P/2$ is the number of antithetic *pairs*, i.e. of
# independent noise directions; $\sigma$ is only ever the noise scale.

# %%
def per_sample_terms(kind, theta, sigma, eps):
    """One gradient term per sample, (M, d), for the three estimators."""
    if kind == "plain":
        return F(theta + sigma * eps)[:, None] * eps / sigma
    if kind == "baseline":
        return (F(theta + sigma * eps) - F(theta))[:, None] * eps / sigma
    return ((F(theta + sigma * eps) - F(theta - sigma * eps)) / (2 * sigma))[:, None] * eps


g0 = grad_F(theta0)
M = book.setting(10_000, 200_000)
eps = rng.standard_normal((M, d))
print(f"F(theta0) = {F(theta0):.3f}, |g| = {np.linalg.norm(g0):.3f}, d = {d}")
print(f"predicted for small sigma: baseline (d+1)|g|^2 = {(d + 1) * g0 @ g0:.3f}, "
      f"antithetic 2(d+1)|g|^2 = {2 * (d + 1) * g0 @ g0:.3f}")
print(f"{'sigma':>6} | total variance per evaluation of F:  plain    baseline  antithetic")
variance_table = {}  # sigma -> {estimator: total variance per evaluation}
for sigma in [1.0, 0.1, 0.01]:
    v = {k: per_sample_terms(k, theta0, sigma, eps).var(0).sum() for k in ("plain", "baseline", "antithetic")}
    v["antithetic"] *= 2    # two evaluations per pair
    variance_table[sigma] = v
    print(f"{sigma:6.2f} | {'':36}{v['plain']:9.2f} {v['baseline']:9.3f} {v['antithetic']:10.3f}")
print(f"at sigma = 1, baseline / antithetic = {variance_table[1.0]['baseline'] / variance_table[1.0]['antithetic']:.1f}")
print(f"predicted plain variance at sigma=0.01: F^2 d / sigma^2 = {F(theta0) ** 2 * d / 1e-4:.0f}")
# the claims read off this table below (the variances are estimated from M samples: a few per cent of noise)
book.check("baseline / antithetic variance at sigma = 1", variance_table[1.0]["baseline"] / variance_table[1.0]["antithetic"], 5, 1)
book.check("plain / baseline variance at sigma = 0.01, in units of 10^4",
           variance_table[0.01]["plain"] / variance_table[0.01]["baseline"] / 1e4, 3, 0.3)
book.check("plain / antithetic variance at sigma = 0.01, in units of 10^4",
           variance_table[0.01]["plain"] / variance_table[0.01]["antithetic"] / 1e4, 1.5, 0.15)
book.check("baseline variance at sigma = 0.01 / (d+1)|g|^2", variance_table[0.01]["baseline"] / ((d + 1) * g0 @ g0), 1, 0.1)

# %% [markdown]
# Read the table column by column:
#
# - **plain** explodes like $1/\sigma^2$: at $\sigma=0.01$ it is the predicted $F(\theta)^2d/\sigma^2$,
#   about $3\times10^4$ times the baseline's variance and $1.5\times10^4$ times the antithetic
#   pair's (per evaluation). It would need that many times the population.
# - At small $\sigma$, **baseline** and **antithetic** both reach the floor $(d+1)\lVert g\rVert^2$ per
#   *term*; the baseline is even twice as cheap per evaluation, since a pair costs two.
# - At $\sigma=1$ — the kind of $\sigma$ ES actually uses, large enough to smooth — the Hessian and
#   higher even terms are no longer small. The baseline keeps them, the antithetic pair cancels
#   them: about 5x less variance per evaluation here.
#
# So the antithetic pair is the estimator that stays good over the whole range of $\sigma$. It
# has two more virtues we use later: a pair shares one noise vector (half the random numbers),
# and comparing the two members of a pair gives a fitness that needs no scale at all
# (chapter 2's pair sign). Every estimator in npegg is antithetic.

# %%
if plt:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sig = list(variance_table)
    for k, m in (("plain", "o-"), ("baseline", "s-"), ("antithetic", "^-")):
        ax.loglog(sig, [variance_table[s][k] for s in sig], m, label=k)
    ax.axhline((d + 1) * g0 @ g0, color="k", ls=":", label="$(d+1)\\|g\\|^2$")
    ax.axhline(2 * (d + 1) * g0 @ g0, color="k", ls="--", label="$2(d+1)\\|g\\|^2$")
    ax.set(xlabel="σ", ylabel="variance per evaluation of F", title="A baseline or antithetic pairs remove the 1/σ² blow-up")
    ax.legend()
    book.save(fig, "01_variance.png")

# %% [markdown]
# ## 4. ES against finite differences as the population grows
#
# The reference answer is a **central finite difference**, $\partial_i F \approx
# (F(\theta+he_i)-F(\theta-he_i))/2h$, which needs $2d$ evaluations and is accurate to $O(h^2)$.
# (ES is not a rival to finite differences at $d=20$; it wins when $d$ is huge, evaluations run in
# parallel, or $F$ has no useful derivative. Here finite differences are our ruler.)
#
# The antithetic estimate with $N$ pairs is an average of $N$ independent terms, so its error
# should fall like $1/\sqrt N$ — until it reaches the *smoothing bias*
# $\lVert\nabla F_\sigma-\nabla F\rVert$, which no population size removes. That floor we can
# compute separately: differentiating under the expectation,
# $\nabla F_\sigma(\theta)=\mathbb{E}[\nabla F(\theta+\sigma\varepsilon)]$, an average of exact
# gradients with little noise (possible here only because we know $\nabla F$).

# %%
h = 1e-5
g_fd = np.array([(F(theta0 + h * e) - F(theta0 - h * e)) / (2 * h) for e in np.eye(d)])
print(f"central differences vs exact gradient: max error {np.abs(g_fd - g0).max():.1e}")


def antithetic_grads_prefix(theta, sigma, eps):
    """Antithetic estimates from the first 1, 2, ..., N pairs at once: eps (N, d) -> (N, d).

    Row n-1 is (1/(2σn)) Σ_{k<n} [F(θ+σε_k) − F(θ−σε_k)] ε_k; a cumulative sum gives every
    population size from one set of evaluations.
    """
    diff = F(theta + sigma * eps) - F(theta - sigma * eps)             # (N,)
    n = np.arange(1, len(eps) + 1)[:, None]                            # (N, 1)
    return np.cumsum(diff[:, None] * eps, axis=0) / (2 * sigma * n)    # (N, d)


def grad_F_batch(thetas):
    margins = (thetas @ X.T) * y                                  # (M, n)
    return (y / (1 + np.exp(margins))) @ X / n_data               # (M, d)


pops = 2 ** np.arange(2, book.setting(12, 15))      # number of antithetic pairs N
repeats = book.setting(10, 24)
sigmas = [0.05, 0.5]
rel_err, floors = {}, {}
for sigma in sigmas:
    sq = np.zeros(len(pops))
    for _ in range(repeats):
        est = antithetic_grads_prefix(theta0, sigma, rng.standard_normal((pops[-1], d)))[pops - 1]  # (len(pops), d)
        sq += np.sum((est - g_fd) ** 2, axis=1)
    rel_err[sigma] = np.sqrt(sq / repeats) / np.linalg.norm(g_fd)     # RMS relative error
    grad_smooth = grad_F_batch(theta0 + sigma * rng.standard_normal((book.setting(20_000, 200_000), d))).mean(0)
    floors[sigma] = np.linalg.norm(grad_smooth - g_fd) / np.linalg.norm(g_fd)
    slope = np.polyfit(np.log(pops[:5]), np.log(rel_err[sigma][:5]), 1)[0]
    book.check(f"log-log slope of the error, sigma = {sigma}", slope, -0.5, 0.15)   # 1/sqrt(N); MC spread ~0.05
    print(f"sigma = {sigma}: relative error {rel_err[sigma][0]:.3f} at N = {pops[0]} pairs, "
          f"{rel_err[sigma][-1]:.4f} at N = {pops[-1]:,}; log-log slope over N <= {pops[4]}: {slope:.2f}; "
          f"smoothing floor |grad F_sigma - grad F| / |grad F| = {floors[sigma]:.4f}")
big = rel_err[sigmas[0]]
print(f"sigma = {sigmas[0]}: slope over all N {np.polyfit(np.log(pops), np.log(big), 1)[0]:.3f}; "
      f"error x sqrt(N) = {(big * np.sqrt(pops)).min():.2f} .. {(big * np.sqrt(pops)).max():.2f}; "
      f"sqrt(d + 1) = {np.sqrt(d + 1):.2f}")
# every point on the law sqrt(d+1): the RMS over `repeats` draws has a relative spread of about
# 1/sqrt(2 repeats) (<= 22%); allow twice that at the worst of the ~10 points
book.check("max |error x sqrt(N) / sqrt(d+1) - 1|, sigma = 0.05",
           np.abs(big * np.sqrt(pops) / np.sqrt(d + 1) - 1).max(), 0, 2 / np.sqrt(2 * repeats))
assert floors[0.5] > 10 * floors[0.05]

# %%
if plt:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for sigma, m in zip(sigmas, ("o-", "s-")):
        ax.loglog(pops, rel_err[sigma], m, label=f"antithetic ES, σ = {sigma}")
    c = rel_err[sigmas[0]][0] * np.sqrt(pops[0])
    ax.loglog(pops, c / np.sqrt(pops), "k--", label="$\\propto 1/\\sqrt{N}$")
    ax.axhline(floors[sigmas[1]], color="C1", ls=":", label=f"smoothing floor, σ = {sigmas[1]}")
    ax.set(xlabel="antithetic pairs N (2N evaluations)", ylabel="‖ĝ − ∇F‖ / ‖∇F‖ (RMS over repeats)",
           title="ES estimate vs central finite differences")
    ax.legend()
    book.save(fig, "01_es_vs_fd.png")

# %% [markdown]
# Both curves start with slope $-\tfrac12$ on the log-log plot, i.e. like $1/\sqrt N$: the product
# error × $\sqrt N$ stays within the narrow band printed above. With
# $\sigma=0.5$ the curve flattens at the smoothing floor printed above: from there on, more samples
# estimate $\nabla F_\sigma$ ever more precisely, and $\nabla F_\sigma$ is simply not $\nabla F$. With
# $\sigma=0.05$ the floor is far below the noise. For a *textbook* gradient small $\sigma$ is
# better; for optimisation a large $\sigma$ is often the point, as the last experiment shows.
#
# The narrow band of error × $\sqrt N$ is not a coincidence; it is $\sqrt{d+1}$, the square root
# of this problem's dimension plus one. That is ES's **scaling law**, and the next section is
# about it.
#
# ## 5. The scaling law of ES, and why it still works when $d \gg N$
#
# For small $\sigma$ one antithetic pair contributes $(g^\top\varepsilon)\,\varepsilon$, whose mean is
# $g$ and whose total variance is $(d+1)\lVert g\rVert^2$ (section 3). The average of $N$
# independent pairs therefore has
# $$\frac{\mathbb{E}\lVert\hat g - g\rVert^2}{\lVert g\rVert^2} = \frac{d+1}{N}
#   \qquad\Longrightarrow\qquad \text{relative error} \approx \sqrt{\frac{d+1}{N}} .$$
# The error is a sum of $d$ roughly independent coordinates' worth of noise, nearly orthogonal
# to $g$ when $d$ is large, so $\lVert\hat g\rVert^2 \approx \lVert g\rVert^2\,(1 + (d+1)/N)$ and the
# **cosine between the estimate and the true gradient** is
# $$\cos(\hat g, g) \approx \Big(1 + \frac{d+1}{N}\Big)^{-1/2} \;\approx\; \sqrt{N/d}\quad (d \gg N).$$
# For a *linear* fitness $F(\theta)=g^\top\theta$ the pair's difference quotient is exactly
# $g^\top\varepsilon$ for any $\sigma$, and the relative error $(d+1)/N$ is then exact in
# expectation. The cosine formula is not: it is a first-order consequence, which puts the mean
# $\mathbb{E}\lVert\hat g\rVert^2$ where each sample's own $\lVert\hat g\rVert$ belongs, so it is
# accurate once $N$ or $d$ is large and off at the smallest. At $N=1$ the cosine is exactly
# $|u_1|$ for a uniformly random unit vector $u\in\mathbb{R}^d$, whose mean is
# $\Gamma(\tfrac d2)/(\sqrt\pi\,\Gamma(\tfrac{d+1}2)) = 0.259$ at $d=10$, while the formula says
# $(1+11)^{-1/2} = 0.289$. With a linear fitness we can measure both over a wide range of $d$ and
# $N$ in a moment.

# %%
def scaling_law_point(d, N, repeats, rng):
    """Mean squared relative error, its standard error, and mean cosine of N-pair estimates of g in R^d."""
    g = rng.standard_normal(d)                                       # (d,) the true gradient
    sq, cos = [], []
    for _ in range(repeats):
        e = rng.standard_normal((N, d))                              # (N, d) one direction per pair
        g_hat = (e @ g) @ e / N                                      # (d,) mean of (g.e) e over the pairs
        sq.append(np.sum((g_hat - g) ** 2) / (g @ g))
        cos.append(g_hat @ g / (np.linalg.norm(g_hat) * np.linalg.norm(g)))
    return np.mean(sq), np.std(sq) / np.sqrt(repeats), np.mean(cos)


law_ds = book.setting([10, 100, 1000], [10, 100, 1000, 10_000])
law_Ns = book.setting([1, 4, 16, 64, 256], [1, 4, 16, 64, 256, 1024])
law = {}
print(f"{'d':>6} {'N':>5} | {'rel. error':>10} {'sqrt((d+1)/N)':>13} | {'cosine':>7} {'(1+(d+1)/N)^-1/2':>16}")
for dd in law_ds:
    for NN in law_Ns:
        reps = max(8, min(200, 4_000_000 // (dd * NN)))
        m, se, c = scaling_law_point(dd, NN, reps, rng)
        law[dd, NN] = (np.sqrt(m), c)
        print(f"{dd:6d} {NN:5d} | {np.sqrt(m):10.3f} {np.sqrt((dd + 1) / NN):13.3f} | "
              f"{c:7.3f} {(1 + (dd + 1) / NN) ** -0.5:16.3f}")
        assert abs(m - (dd + 1) / NN) < 5 * se                      # exact law, 5 standard errors
        # the cosine formula neglects O(1/d) and O(1/N) terms: a loose check that it is the right size
        assert abs(c - (1 + (dd + 1) / NN) ** -0.5) < 0.1 + 2 / np.sqrt(dd * NN)
book.check("cosine at d = 10000, N = 64", law.get((10_000, 64), (0, 0.08))[1], 0.08, 0.01, full_only=True)
# the first-order formula against the exact N = 1 mean, Γ(d/2) / (√π Γ((d+1)/2)) at d = 10
rng1 = np.random.default_rng(11)                                          # its own stream: the rest is unchanged
e1 = rng1.standard_normal((book.setting(100_000, 400_000), 10))           # (M, d) one pair's direction each
g1 = rng1.standard_normal(10)
cos1 = np.abs(e1 @ g1) / (np.linalg.norm(e1, axis=1) * np.linalg.norm(g1))  # (M,) cos((g.e) e, g)
exact1 = math.gamma(5) / (math.sqrt(math.pi) * math.gamma(5.5))
print(f"d = 10, N = 1: mean cosine {cos1.mean():.4f} ± {cos1.std() / np.sqrt(len(cos1)):.4f}, exact {exact1:.4f}, "
      f"first-order formula {12 ** -0.5:.4f}")
book.check("exact mean cosine at d = 10, N = 1", exact1, 0.259, 0.0005)
book.check("measured mean cosine at d = 10, N = 1", cos1.mean(), 0.259, 4 * cos1.std() / np.sqrt(len(cos1)))

# %%
if plt:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    Ns_ = np.array(law_Ns)
    for i, dd in enumerate(law_ds):
        a1.loglog(Ns_, [law[dd, n][0] for n in law_Ns], "o", color=f"C{i}", label=f"d = {dd}")
        a1.loglog(Ns_, np.sqrt((dd + 1) / Ns_), "-", color=f"C{i}", lw=0.8)
        a2.semilogx(Ns_, [law[dd, n][1] for n in law_Ns], "o", color=f"C{i}", label=f"d = {dd}")
        a2.semilogx(Ns_, (1 + (dd + 1) / Ns_) ** -0.5, "-", color=f"C{i}", lw=0.8)
    a1.set(xlabel="antithetic pairs N", ylabel="‖ĝ − g‖ / ‖g‖ (RMS)", title="relative error: dots measured, lines √((d+1)/N)")
    a2.set(xlabel="antithetic pairs N", ylabel="cos(ĝ, g)", title="cosine: lines (1 + (d+1)/N)^−½")
    a1.legend(fontsize=8); a2.legend(fontsize=8)
    book.save(fig, "01_scaling_law.png")

# %% [markdown]
# Every measured relative error lies on its line. The cosine follows its formula too, and shows
# the uncomfortable part: with $d = 10\,000$ parameters and $N = 64$ pairs the estimate points
# only about $0.08$ of the way along the gradient. Real networks have $d$ in the millions or
# billions, and populations of thousands at most. Why does training work at all?
#
# ### Why $d \gg N$ is fine
#
# Because the noise in $\hat g$ is *unbiased*: it does not push in any consistent direction, and
# a step that is mostly noise still gains, on average, along $g$. Take the simplest landscape,
# $F(\theta) = -\tfrac12\lVert\theta\rVert^2$ (so $g = -\theta$), and step $\theta \leftarrow \theta + \alpha\hat g$:
# $$\mathbb{E}\lVert\theta'\rVert^2 = \lVert\theta\rVert^2\Big(1 - 2\alpha + \alpha^2\big(1 + \tfrac{d+1}{N}\big)\Big),$$
# minimised by $\alpha^\star = N/(N+d+1)$, which leaves $\mathbb{E}\lVert\theta'\rVert^2 = \big(1 - \frac{N}{N+d+1}\big)\lVert\theta\rVert^2$.
# So every step makes a fraction $N/(N+d+1)$ of the progress of an exact gradient step, however
# small that fraction is. To shrink the loss by a factor $K$ takes about
# $\ln K\,(N+d+1)/N$ steps and $2N$ evaluations per step, i.e. about
# $$2\ln K\,(N + d + 1) \text{ evaluations}:$$
# **nearly independent of $N$ as long as $N \ll d$.** A small population needs many cheap steps,
# a large one few expensive steps, and the total work is the same. What a large population buys
# is *fewer sequential steps*: its $2N$ evaluations are independent and run in parallel. That is
# the whole case for ES at hyperscale — if the evaluations of a generation are cheap to run side by
# side (chapter 3 makes them cheap for matrices), the population can grow with the hardware, and
# the number of steps shrinks in proportion until $N$ approaches $d$. Measured:

# %%
def steps_to_shrink(d, N, factor, rng, max_steps=1_000_000):
    """ES on F = -|θ|²/2 from |θ| = 1 with the optimal step α = N/(N+d+1); steps until |θ|² < 1/factor."""
    theta = rng.standard_normal(d)
    theta /= np.linalg.norm(theta)                                   # (d,)
    alpha = N / (N + d + 1)
    for step in range(1, max_steps + 1):
        e = rng.standard_normal((N, d))                              # (N, d)
        g_hat = (e @ -theta) @ e / N                                 # exact pair quotients of a quadratic
        theta = theta + alpha * g_hat
        if theta @ theta < 1 / factor:
            return step
    raise RuntimeError("did not converge")


d_big, shrink = book.setting(200, 1000), 100.0
step_Ns = book.setting([1, 4, 16, 64, 256], [1, 4, 16, 64, 256, 1024, 4096])
print(f"F = -|θ|²/2 in d = {d_big} dimensions, loss reduced {shrink:.0f}x:")
print(f"{'N':>5} {'steps':>7} {'predicted':>9} {'evaluations':>12} {'predicted':>10}")
for NN in step_Ns:
    st = steps_to_shrink(d_big, NN, shrink, rng)
    pred = np.log(shrink) / -np.log(1 - NN / (NN + d_big + 1))
    print(f"{NN:5d} {st:7d} {pred:9.1f} {2 * NN * st:12,d} {2 * NN * pred:10,.0f}")
    assert abs(st - pred) < 0.25 * pred + 2                          # a sum of many steps: a tight law

# %% [markdown]
# The number of steps falls like $1/N$ while $N \ll d$, and the total number of evaluations stays
# at about $2\ln(100)\,(d+1)$ — until $N$ passes $d$, where steps cannot drop below one or two and
# extra members are wasted. (Finite differences would need $2d$ evaluations for *one* exact
# gradient; ES spends about the same to make the same progress, but in steps that tolerate noise,
# need no derivative, and parallelise.) Two more things make ES scale across machines, which
# later chapters build: a member's noise is rebuilt from a seed instead of being sent (chapter 4),
# and what a worker sends back is one number, its fitness.
#
# ## 6. Closing the loop: ES as gradient ascent on the blur
#
# An ES optimiser is just $\theta \leftarrow \theta + \alpha\,\hat g$. Back to the bumpy 1-D function:
# start on the local maximum at $x\approx 4.1$ and climb with $\sigma=0.1$ and with $\sigma=1$.

# %%
def climb(sigma, steps=300, pairs=64, lr=0.1, x=4.1, seed=0):
    r = np.random.default_rng(seed)
    path = [x]
    for _ in range(steps):
        e = r.standard_normal(pairs)
        g = (F1(x + sigma * e) - F1(x - sigma * e)) @ e / (2 * sigma * pairs)
        x = x + lr * g
        path.append(x)
    return np.array(path)


paths = {s: climb(s) for s in (0.1, 1.0)}
for s, p in paths.items():
    print(f"sigma = {s}: x goes 4.10 -> {p[-1]:.3f}, F(x) = {F1(p[-1]):.3f}  (global max F(0) = 1)")
book.check("sigma = 0.1 ends at", paths[0.1][-1], 4.1, 0.1)
book.check("sigma = 1 ends at", paths[1.0][-1], 0, 0.05)

# %%
if plt:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.plot(grid, F1(grid), color="0.6", label="F")
    for (s, p), ms in zip(paths.items(), (9, 3)):
        a1.plot(p, F1(p), ".", ms=ms, label=f"ES path, σ={s}")
        a2.plot(p, label=f"σ={s}")
    a1.set(xlim=(-3, 6), xlabel="x", title="ES paths on F: σ = 0.1 stays on its bump")
    a2.set(xlabel="step", ylabel="x", title="a large σ follows $F_\\sigma$ to the global maximum")
    a1.legend(); a2.legend()
    book.save(fig, "01_escape.png")

# %% [markdown]
# With $\sigma=0.1$ ES sees $F$ almost exactly and stays on the local bump; with $\sigma=1$ it
# climbs $F_1$, which has a single maximum, and lands near $x=0$.
#
# ## Summary
#
# - ES maximises the smoothed $F_\sigma(\theta)=\mathbb{E}F(\theta+\sigma\varepsilon)$, whose gradient
#   $\mathbb{E}[F(\theta+\sigma\varepsilon)\varepsilon]/\sigma$ needs only evaluations of $F$.
# - Antithetic pairs cancel every even-order term of $F$; the variance drops from
#   $\sim F^2d/\sigma^2$ to $(d+1)\lVert g\rVert^2$ per pair.
# - The error falls like $1/\sqrt N$ to a floor $\lVert\nabla F_\sigma-\nabla F\rVert$ set by $\sigma$.
# - The scaling law: relative error $\sqrt{(d+1)/N}$, cosine $(1+(d+1)/N)^{-1/2}$ to first order. When $d\gg N$
#   each step makes a fraction $N/(N+d+1)$ of a gradient step's progress, so the total number of
#   evaluations hardly depends on $N$, and a large population buys fewer sequential steps.
#
# ## Exercises
#
# Try each before opening its solution in `tutorials/solutions/01_es_from_scratch.py` (the test
# suite runs that file, so the answers there are checked).
#
# 1. **Faster bumps.** For $F(x) = -0.1x^2 + \cos 5x$, derive $F_\sigma$, the σ beyond which it
#    is concave, and (by counting maxima on a grid) the σ from which it has a single maximum.
#    Which is larger, and why must it be?
# 2. **The fourth moment.** Check by Monte Carlo, for $d = 5$ and a $g$ of your choice, that
#    $\mathbb{E}[(g^\top\varepsilon)^2\lVert\varepsilon\rVert^2] = (d+2)\lVert g\rVert^2$, the identity behind the
#    variance $(d+1)\lVert g\rVert^2$ of one antithetic pair. Then prove it (expand the square and
#    use $\mathbb{E}\varepsilon_i^4 = 3$).
# 3. **Too large a step.** In section 5's quadratic, show that the step $\alpha = 2\alpha^\star$
#    makes *no* progress on average, and measure it: the mean of
#    $\lVert\theta'\rVert^2/\lVert\theta\rVert^2$ over many steps should be 1. What happens at $3\alpha^\star$?
#
# **Next**, chapter 2: the raw values $F$ are replaced by *shaped* fitnesses (z-scores, ranks,
# signs), and $\hat g$ is handed to an optimiser — with a sign and a scale that need explaining.

# %%
book.finish(FIGURES)
