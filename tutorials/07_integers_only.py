# %% [markdown]
# # Chapter 7 — Integers only
#
# Chapters 1–6 trained models in floating point. nano-egg, the reference this project mirrors,
# also trains a language model whose every parameter and activation is an **int8**, and whose
# forward pass contains no floating point at all. This chapter builds that arithmetic from the
# ground up, one small function at a time, and checks each fast version against a slow, obvious
# one.
#
# **What you will learn.**
#
# 1. **fixed point**: how an int8 holds a real number as *value × 16*, and what that costs;
# 2. **floor versus truncation**: the two ways to divide integers, a case where they differ, and
#    why the reference's choice (floor, everywhere) matters;
# 3. **the scaled integer matmul** $y = \mathrm{clip}(\lfloor \mathrm{acc} / (16\lfloor\sqrt{I}\rfloor)\rfloor)$,
#    derived from the float matmul it stands for;
# 4. **the integer layer norm** and its 16 MiB division table, against the one-line formula that
#    replaces it;
# 5. **the integer log-likelihood** through EXP2/LOG2 tables, and an exact threshold trick that
#    replaces the reference's 1 GiB LOG2 table with 449 integers, and how far the integer
#    log-likelihood can be from the exact one (up to 2 units of 1/16 bit, measured);
# 6. **the integer recurrent cell**: how nano-egg gates without sigmoid or tanh;
# 7. **exact integer matmuls through float BLAS**: why a float32 matmul of int8 data is exact up
#    to a bound, a demonstration at and past the bound, and what it buys in time.
#
# The code taught here lives in `npegg/int8/` (`fixedpoint.py`, `intmm.py`, `loglik.py`); the
# semantics are written out in the project's int8 specification ([`docs/int8-spec.md`](../docs/int8-spec.md),
# quoted as "spec §n").
#
# **Run it**: `python tutorials/07_integers_only.py` (or open it as a notebook). Figures go to
# `$NPEGG_TUTORIAL_OUT` (default `tutorials/figures/`); `NPEGG_TUTORIAL_SMALL=1` runs a small
# setting in a few seconds. The full setting took **2 min 17 s** on this machine (2 cores, heavily shared with other jobs).

# %%
import time

import numpy as np

import _book as book
from npegg.int8 import fixedpoint as fp
from npegg.int8 import intmm
from npegg.int8 import loglik

SMALL = book.choose_setting(None)  # None: NPEGG_TUTORIAL_SMALL decides; True = small (seconds), False = full
FIGURES = ["07_floor_vs_trunc.png", "07_matmul_int_vs_float.png", "07_loglik.png", "07_blas_exactness.png"]
plt = book.pyplot()
rng = np.random.default_rng(7)

# %% [markdown]
# ## 1. Fixed point: value × 16
#
# An int8 holds the integers $-128 \dots 127$. To store a real number $v$ we keep
#
# $$ q = \mathrm{clip}\big(\mathrm{round}(16\,v)\big), \qquad \mathrm{clip}(n) = \min(127, \max(-127, n)), $$
#
# so $q/16$ is the value: a resolution of $1/16 = 0.0625$ and a range of $\pm 127/16 \approx \pm 7.94$.
# The 16 is $2^4$, "`FIXED_POINT = 4` fractional bits". Note the **symmetric** range: the clip
# never produces −128, so negating an int8 can never overflow.
#
# Sums and products need care. In fixed point $q_a + q_b = 16(a + b)$ is still value × 16, but it
# can leave the int8 range, and NumPy's int8 arithmetic then **wraps** silently (two's
# complement): $100 + 100$ becomes $-56$. The reference instead *saturates*: widen to int32,
# add, clip (`clipped_add`). A product $q_a q_b = 256\,ab$ carries the scale twice, so it must be
# divided by 16 to be value × 16 again — which raises the question of *how* to divide.

# %%
v = np.array([0.0, 0.03, -0.03, 1.0, -2.5, 3.14159, 7.9, 9.0, -9.0])
q = fp.saturate(np.round(v * 16))
print("value      ", v)
print("int8 (×16) ", q)
print("back /16   ", q / 16)
print("max |error| inside the range:", np.abs(q / 16 - v)[np.abs(v) < 7.9].max(), "(at most 1/32)")

a = np.array([100, -100, 90], np.int8)
b = np.array([100, -100, 60], np.int8)
print("int8 a + b wraps:      ", a + b)
print("clipped_add saturates: ", fp.clipped_add(a, b))

# %% [markdown]
# ## 2. Floor versus truncation
#
# There are two common ways to divide integers:
#
# * **floor**, $\lfloor a / d \rfloor$, rounds toward $-\infty$: Python's `//`, NumPy's
#   `floor_divide`, and an arithmetic right shift `a >> k` $= \lfloor a / 2^k \rfloor$;
# * **truncation**, $\mathrm{trunc}(a / d)$, rounds toward zero: C's and CUDA's `/` on integers,
#   `int(a / d)` in Python, `np.trunc`, and PyTorch's `torch.div(..., rounding_mode="trunc")`.
#
# They agree when $a \ge 0$ or $d$ divides $a$, and differ by exactly one otherwise. The reference
# uses floor everywhere (every `>>` and every `//` in JAX is a floor), so an implementation in C
# that writes `acc / 80` is wrong on every negative accumulator that 80 does not divide. The
# smallest example, from the matmul of §3 with $I = 32$ inputs (divisor $16 \cdot 5 = 80$):

# %%
acc = np.array([-1, -79, -80, -81, 79, 80])
print("acc          ", acc)
print("floor  acc//80", np.floor_divide(acc, 80))
print("trunc  acc/80 ", np.trunc(acc / 80).astype(int))
print("shift  -1 >> 4 =", np.right_shift(np.int32(-1), 4), "  but  int(-1 / 16) =", int(-1 / 16))

# %% [markdown]
# The difference is not cosmetic. Over many random accumulators, truncation maps the whole open
# interval $(-d, d)$ to 0 — a "dead zone" twice as wide as every other bin — and has no bias on
# average, while floor has equal bins and a bias of about $-\tfrac12$ unit. Neither is "more
# correct"; what matters is doing exactly what the reference does. A second consequence of the
# floor, the one that surprises people: **antithetic perturbations are not symmetric**. A
# perturbation $\pm e$ shifted right by $k$ gives $\lfloor e/2^k \rfloor$ and
# $\lfloor -e/2^k \rfloor$, and these add up to $-1$, not 0, whenever $2^k \nmid e$ ([spec §2.4](../docs/int8-spec.md)).

# %%
d = 16
a_all = np.arange(-48, 49)
floor_q, trunc_q = np.floor_divide(a_all, d), np.trunc(a_all / d).astype(int)
big = rng.integers(-100_000, 100_000, 1_000_000)
print(f"mean error (units of 1) over 10⁶ random accumulators, d = {d}:")
print(f"  floor: {np.mean(np.floor_divide(big, d) - big / d):+.4f}   trunc: {np.mean(np.trunc(big / d) - big / d):+.4f}")
print(f"  accumulators sent to 0: floor {np.sum(floor_q == 0)}, trunc {np.sum(trunc_q == 0)} of the {len(a_all)} in [-48, 48]")

e = rng.integers(-5000, 5000, 100_000)
k = 4 + 4                                       # FIXED_POINT + sigma_shift, with sigma_shift = 4
pair_sum = fp.floor_shift(e, k) + fp.floor_shift(-e, k)
print(f"⌊e/2^{k}⌋ + ⌊−e/2^{k}⌋ over 10⁵ random e: values {np.unique(pair_sum)}, "
      f"asymmetric in {np.mean(pair_sum != 0):.1%} of pairs")

if plt:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.step(a_all, floor_q, where="post", label=r"floor $\lfloor a/16 \rfloor$ (the reference)")
    ax.step(a_all, trunc_q + 0.06, where="post", label=r"truncation $\mathrm{trunc}(a/16)$ (C's /)", ls="--")
    ax.plot(a_all, a_all / d, color="gray", lw=0.8, label="a / 16")
    ax.set_xlabel("integer a")
    ax.set_ylabel("quotient")
    ax.set_title("Floor and truncation differ for every negative a that 16 does not divide")
    ax.legend(fontsize=8)
    book.save(fig, "07_floor_vs_trunc.png")

# %% [markdown]
# ## 3. The scaled integer matmul
#
# A float layer computes $y_i = \sum_j W_{ij} x_j$. nano-egg initialises weights as
# $\mathcal{N}(0, 1)$ and applies the usual $1/\sqrt{I}$ fan-in scale inside the matmul, so the
# float computation it stands for is
#
# $$ y_i = \frac{1}{\sqrt{I}} \sum_{j=1}^{I} w_{ij}\, x_j . $$
#
# Store both operands as value × 16, $\hat w = 16 w$ and $\hat x = 16 x$. The exact integer
# accumulator is $\mathrm{acc}_i = \sum_j \hat w_{ij} \hat x_j = 256 \sum_j w_{ij} x_j$, and the output
# in fixed point is
#
# $$ \hat y_i = 16\, y_i = \frac{\mathrm{acc}_i}{16 \sqrt{I}}
#    \;\;\leadsto\;\;
#    \hat y_i = \mathrm{clip}\Big( \Big\lfloor \frac{\mathrm{acc}_i}{16 \lfloor \sqrt{I} \rfloor} \Big\rfloor \Big). $$
#
# Two integer approximations are made: the division is a floor, and $\sqrt{I}$ becomes the
# integer $\lfloor \sqrt I \rfloor$ ([spec §2.2](../docs/int8-spec.md)). The divisor is therefore *not* a power of two in
# general: $I = 48$ gives $16 \cdot 6 = 96$, $I = 192$ gives $16 \cdot 13 = 208$. (For a square $I$
# like 64 or 256 it is exact; for $I = 48$ the outputs come out $\sqrt{48}/6 \approx 1.155$ times
# larger than the float layer's — a fixed property of the model, not an error to fix.)
#
# First the slow, obvious version: three Python loops over Python integers, which cannot overflow
# and whose `//` is a floor. Then npegg's `intmm.do_mm`, which does the same in one call.

# %%
for n in (16, 32, 48, 64, 128, 192, 256, 1024):
    print(f"I = {n:5d}:  ⌊√I⌋ = {fp.isq(n):3d}   divisor 16·⌊√I⌋ = {intmm.mm_divisor(n):4d}   16·√I = {16 * np.sqrt(n):7.2f}")


def do_mm_loops(W, x):
    """The slow twin: y[p, i] = clip(⌊Σⱼ W[i, j]·x[p, j] / (16·⌊√I⌋)⌋), in Python integers."""
    out_dim, in_dim = W.shape
    div = 16 * int(np.sqrt(in_dim))
    y = np.zeros((x.shape[0], out_dim), np.int8)
    for p in range(x.shape[0]):
        for i in range(out_dim):
            acc = 0
            for j in range(in_dim):
                acc += int(W[i, j]) * int(x[p, j])
            y[p, i] = min(127, max(-127, acc // div))
    return y


I, O, P = 48, 16, 6
W8 = fp.saturate(np.round(16 * rng.standard_normal((O, I))))          # (O, I) int8, value × 16
x8 = rng.integers(-127, 128, (P, I)).astype(np.int8)                    # (P, I) int8, value × 16
t0 = time.perf_counter(); y_slow = do_mm_loops(W8, x8); t_slow = time.perf_counter() - t0
t0 = time.perf_counter(); y_fast = intmm.do_mm(W8, x8); t_fast = time.perf_counter() - t0
print(f"loops == do_mm: {np.array_equal(y_slow, y_fast)}   ({t_slow * 1e3:.1f} ms vs {t_fast * 1e3:.2f} ms)")

# %% [markdown]
# How close is the integer layer to the float layer it stands for? Take real inputs (standard
# deviation 3, so that some outputs reach the clip), quantise them, run both, and compare in
# units of the value (the plot). The integer output lies on the float one's line up to the
# $\sqrt{I}/\lfloor\sqrt I\rfloor$ factor (1 here: $I$ is a perfect square) and a quantisation noise of
# one or two sixteenths on average — the largest errors come from the few inputs beyond ±7.94,
# which the quantiser clips — and it saturates at ±127/16 ≈ ±7.94.
#
# A perturbed matmul adds each member's low-rank term $\lfloor x B A^\top / 2^{4+s} \rfloor$, with
# $s$ = `sigma_shift` (an integer shift; chapter 8 shows it acts like a float σ of about $2^{-s}$),
# to the accumulator before the division (chapter 8 is about where A and B come from). `do_mm`
# floors that term on its own and never forms the perturbed weight; its slow twin `do_mm_dense`
# materialises every member's weight and applies a single floor. They agree because
# $\lfloor \lfloor y \rfloor / D \rfloor = \lfloor y / D \rfloor$ for any integer $D > 0$.

# %%
I, O, P = book.setting((64, 64, 64), (256, 256, 512))
W_real = rng.standard_normal((O, I))                                      # N(0, 1) weights
x_real = 3.0 * rng.standard_normal((P, I))                                # inputs of scale 3
W8, x8 = fp.saturate(np.round(16 * W_real)), fp.saturate(np.round(16 * x_real))
y_float = x_real @ W_real.T / np.sqrt(I)                                  # (P, O) the float layer
y_int = intmm.do_mm(W8, x8) / 16                                          # (P, O) back to values
inside = np.abs(y_float) < 7
print(f"I = {I}: int vs float layer, |error| mean {np.abs(y_int - y_float)[inside].mean():.3f}, "
      f"max {np.abs(y_int - y_float)[inside].max():.3f} (values; one unit = 1/16 = 0.0625)")

A = rng.integers(-80, 81, (P, O, 1)).astype(np.int8)                      # (P, O, r) signed factors
B = rng.integers(-80, 81, (P, I, 1)).astype(np.int8)                      # (P, I, r)
same = np.array_equal(intmm.do_mm(W8, x8[:, None], A, B, 4), intmm.do_mm_dense(W8, x8[:, None], A, B, 4))
print("perturbed do_mm (floor the low-rank term, never form W + ABᵀ) == do_mm_dense:", same)

if plt:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot(y_float.ravel()[:50000], y_int.ravel()[:50000], ".", ms=1, alpha=0.3)
    lim = [-12, 12]
    ax.plot(lim, lim, color="gray", lw=0.8, label="y = x")
    ax.axhline(127 / 16, color="r", lw=0.6, ls=":")
    ax.axhline(-127 / 16, color="r", lw=0.6, ls=":", label="clip ±127/16")
    ax.set_xlim(lim); ax.set_ylim(lim)
    ax.set_xlabel("float layer  x Wᵀ/√I")
    ax.set_ylabel("int8 layer  do_mm / 16")
    ax.set_title(f"Scaled integer matmul, I = {I}")
    ax.legend(fontsize=8)
    book.save(fig, "07_matmul_int_vs_float.png")

# %% [markdown]
# ## 4. The integer layer norm and its division table
#
# nano-egg normalises by the **mean absolute value**, not the standard deviation, and does not
# subtract the mean ([spec §2.5](../docs/int8-spec.md)). For $x \in \mathbb{Z}^H$ and an int8 weight $w$ (16 means 1.0):
#
# $$ m = \Big\lfloor \frac{\max(\sum_j |x_j|,\,1)}{H} \Big\rfloor, \qquad
#    y_j = \mathrm{clip}\Big( \Big\lfloor \frac{x_j\, w_j}{m} \Big\rfloor \Big). $$
#
# With $w = 16$ this is $y_j \approx 16\, x_j / \overline{|x|}$: the output has a mean absolute
# value of about 16, i.e. 1.0 in fixed point, whatever the input's scale. (For very small inputs
# the floored mean $m$ is well below the true mean — $\lfloor 1.3 \rfloor = 1$ — and the output
# comes out larger; the last lines of the next cell show it.)
#
# The reference does not divide. It precomputes a **DIVISION table** with 256 rows (the divisor
# $m$, which is at most 127) and 65 536 columns (the int16 bit pattern of the numerator
# $x_j w_j$, which fits since $|x_j w_j| \le 128^2$), 16 MiB of int8, and looks every output up.
# Row 0 — reached when $\sum_j |x_j| < H$, for example the all-zero vector — is built by XLA's
# integer division by zero and holds $-1$ for a zero numerator and $-2$ otherwise.
#
# npegg replaces the table by its formula (`fp.ln_divide`): a floor division, a clip, and a patch
# for row 0. The claim "table = formula" is checked here on **all** $256 \times 65536$ entries,
# against a table built the way the reference builds it.

# %%
t0 = time.perf_counter()
DIV = fp.division_table()                                                    # (256, 65536) int8
t_table = time.perf_counter() - t0
numer = np.arange(1 << 16, dtype=np.uint16).view(np.int16).astype(np.int32)  # (65536,) column → numerator
formula = fp.ln_divide(numer[None, :], np.arange(256)[:, None])              # (256, 65536) int8
print(f"DIVISION table, {DIV.nbytes / 2**20:.0f} MiB built in {t_table:.2f} s; "
      f"equals the formula on all {DIV.size:,} entries: {np.array_equal(DIV, formula)}")
print("row 0 (m = 0) at numerators 0, 5, -5:", DIV[0, [0, 5, (-5) & 0xFFFF]])

H = 64
x = rng.integers(-127, 128, (4096, H)).astype(np.int8)                      # (B, H) int8, value × 16
x[0] = 0                                                                     # Σ|x| = 0: row 0
w = np.full(H, 16, np.int8)                                                  # weight 1.0
y_tab = fp.egg_ln_by_table(x, w, DIV)
y_form = fp.egg_ln(x, w)
print("egg_ln (formula) == egg_ln_by_table:", np.array_equal(y_tab, y_form), "  all-zero row →", y_form[0, :4], "…")
for scale in (2, 8, 32, 127):
    xs = np.clip(np.round(rng.standard_normal((1000, H)) * scale / 1.25), -127, 127).astype(np.int8)
    print(f"input mean |x| = {np.abs(xs).mean():6.1f}  →  output mean |y| = {np.abs(fp.egg_ln(xs, w)).mean():5.1f} (16 = 1.0)")

# %% [markdown]
# ## 5. The integer log-likelihood
#
# The model's head gives int8 logits $\ell_v$, and the reference reads them as base-2 logits in
# fixed point: $p_v \propto 2^{\ell_v/16}$. The log-likelihood of the target $t$ in bits is then
#
# $$ \log_2 p_t = \frac{\ell_t}{16} - \log_2 \sum_v 2^{\ell_v / 16}, $$
#
# and the reference computes 16 times it — units of 1/16 bit — with two tables ([spec §5](../docs/int8-spec.md)). Shift
# the logits to $\ell' = \ell + 128 \in [1, 255]$ so they can index a table, and let
#
# $$ \mathrm{EXP2}[j] = \lfloor 16 \cdot 2^{j/16} \rfloor, \qquad
#    \Sigma = \sum_v \mathrm{EXP2}[\ell'_v] \approx 16 \cdot 2^{8} \sum_v 2^{\ell_v/16}, $$
#
# $$ \mathrm{LOG2}[i] = \mathrm{trunc}\big(16 \log_2 \tfrac{i+1}{16}\big), \qquad
#    \mathrm{ll} = \ell'_t - \mathrm{LOG2}[\Sigma - 1] \approx 16 \log_2 p_t . $$
#
# (The $+128$ in $\ell'_t$ and the $2^8$ inside $\Sigma$ cancel: $16 \log_2 2^8 = 128$.) Bits per byte is
# $-\mathrm{ll}/16$. Every term of $\Sigma$ is at least 16, so $\Sigma$ ranges over
# $[4096, \approx 2.6 \cdot 10^8]$ for 256 logits, and the reference tabulates LOG2 for all
# $i < 2^{28}$: a **1 GiB** int32 table.
#
# First, how good is the integer log-likelihood as an approximation of the float one? Both
# tables round *down* ($\lfloor\cdot\rfloor$ in EXP2 makes $\Sigma$ too small, the floor in LOG2 makes
# the log too small), so the integer log-sum-exp is never too large: the integer log-likelihood
# is never *below* the exact one. How far above? Each floor can cost about one unit:
#
# - LOG2's floor loses less than 1 unit;
# - EXP2's floor makes each term too small by a factor $\lfloor x_j\rfloor/x_j$, $x_j = 16\cdot2^{j/16}$,
#   which costs $16\log_2(x_j/\lfloor x_j\rfloor)$ units when all logits are equal to $j - 128$ —
#   largest at $j = 5$ ($x_5 = 19.87$, floored to 19): 1.03 units.
#
# So the error lies in $[0, 2.03)$ units, not below one. The worst case is easy to build: 256
# equal logits at $-123$, where the exact answer is $\log_2(1/256) = -8$ bits $= -128$ units.

# %%
logits = np.clip(np.round(rng.standard_normal((20000, 256)) * rng.uniform(5, 60, (20000, 1))), -127, 127).astype(np.int8)
target = rng.integers(0, 256, 20000)
ll_int = loglik.int_ll(logits, target) / 16                                   # bits (≤ 0)
z = logits.astype(np.float64) / 16                                            # base-2 logits
ll_float = z[np.arange(len(z)), target] - np.log2(np.exp2(z).sum(axis=1))     # exact log2 p_t
err = ll_int - ll_float
print(f"int_ll/16 − float log2 p: mean {err.mean():+.4f} bits, range [{err.min():+.4f}, {err.max():+.4f}] "
      f"(one unit = 1/16 = 0.0625 bit)")
print("EXP2 by exact integer 16th roots == the reference's float64 construction:",
      np.array_equal(loglik.exp2_table(), loglik.exp2_table_float()))

x_j = 16 * 2 ** (np.arange(1, 256) / 16)                                       # EXP2 before its floor
exp2_cost = 16 * np.log2(x_j / np.floor(x_j))                                  # units lost by EXP2's floor
bound = exp2_cost.max() + 1                                                    # + LOG2's floor (< 1 unit)
print(f"largest EXP2 loss {exp2_cost.max():.3f} units at logit {np.argmax(exp2_cost) + 1 - 128}; bound {bound:.2f} units")
worst = loglik.int_ll(np.full((1, 256), -123, np.int8), np.array([0]))[0]
print(f"256 equal logits at -123: integer {worst} units, exact -128")
low = rng.integers(-127, -63, (20000, 256)).astype(np.int8)                   # low logits: uniform in [-127, -64]
t_low = rng.integers(0, 256, 20000)
z_low = low.astype(np.float64) / 16
err_low = loglik.int_ll(low, t_low) - 16 * (z_low[np.arange(20000), t_low] - np.log2(np.exp2(z_low).sum(1)))  # units
print(f"low logits (uniform in [-127, -64]), 20 000 draws: error {err_low.min():.2f} .. {err_low.max():.2f} units; "
      f"{np.mean(err_low > 1):.1%} exceed one unit")
book.check("largest EXP2 floor loss, units", exp2_cost.max(), 1.03, 0.005)
book.check("256 equal logits at -123: integer ll", worst, -126, 0)
book.check("fraction of low-logit draws more than one unit off", np.mean(err_low > 1), 0.13, 0.01)  # binomial s.e. 0.0024
assert err.min() >= 0 and err_low.min() >= 0 and 16 * err.max() < bound and err_low.max() < bound

# %% [markdown]
# ### The threshold trick: LOG2 without the gigabyte
#
# For $s = i + 1 \ge 16$ the entry is $\mathrm{LOG2}[s - 1] = \lfloor 16 \log_2 s \rfloor - 64$
# (the truncation is a floor because the argument is non-negative, and $16 \log_2 16 = 64$ is an
# integer). Now
#
# $$ \lfloor 16 \log_2 s \rfloor \ge k \iff 16 \log_2 s \ge k \iff s \ge 2^{k/16}
#    \iff s \ge T_k := \lceil 2^{k/16} \rceil \qquad (s \text{ an integer}), $$
#
# so $\lfloor 16 \log_2 s \rfloor$ is just the number of thresholds $T_k$ that are $\le s$, minus one
# (for $T_0 = 1$). Since $T_{448} = \lceil 2^{448/16}\rceil = 2^{28}$ exactly, the thresholds
# $T_0, \dots, T_{448}$ decide every $s \le 2^{28}$: **449 integers** instead of $2^{28}$, and one
# `searchsorted` per lookup. (npegg's `log2_thresholds` keeps 464, up to $T_{463} > 2^{28.9}$, a
# harmless margin: the lookup clamps indices at $2^{28}-1$ first.) $T_k$ is computed exactly, without
# floating point, as the least integer $n$ with $n^{16} \ge 2^k$ (four integer square roots give
# $\lfloor (2^k)^{1/16} \rfloor$).
#
# The reference built its table in float64, so "exact" must be checked against *that*. The
# full setting compares the threshold formula with the reference's float64 formula at **every**
# index below $2^{28}$; the small setting at the first $2^{22}$ indices and $2^{20}$ random ones.
# A float32 version of the same formula, for contrast, is wrong near many thresholds.

# %%
T_k = loglik.log2_thresholds()
print("T_k:", T_k[:20], "…", T_k[-2:], f"({len(T_k)} thresholds, {T_k.nbytes} bytes)")
book.check("thresholds needed for s <= 2^28", np.sum(T_k <= 2**28), 449, 0)
assert T_k[448] == 2**28

t0 = time.perf_counter()
chunk = 1 << 22
n_checked = n_bad = 0
ranges = [np.arange(0, chunk, dtype=np.int64)] if book.SMALL else (
    np.arange(lo, lo + chunk, dtype=np.int64) for lo in range(0, 1 << 28, chunk))
for idx in ranges:
    n_bad += int(np.sum(loglik.log2_entry(idx) != loglik.log2_entry_float(idx)))
    n_checked += idx.size
if book.SMALL:
    idx = rng.integers(0, 1 << 28, 1 << 20)
    n_bad += int(np.sum(loglik.log2_entry(idx) != loglik.log2_entry_float(idx)))
    n_checked += idx.size
print(f"threshold formula vs the reference's float64 LOG2: {n_bad} mismatches in {n_checked:,} indices "
      f"({time.perf_counter() - t0:.1f} s)")

idx = np.arange(15, 1 << 24, dtype=np.int64)
s32 = (idx + 1).astype(np.float32)
log2_f32 = (np.log2(s32 / np.float32(16)) * np.float32(16)).astype(np.int32)
print(f"the same formula in float32: {np.sum(log2_f32 != loglik.log2_entry(idx))} wrong entries below 2²⁴")

if plt:
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax0.hist(err, bins=60)
    ax0.set_xlabel("int_ll/16 − exact log₂ p  (bits)")
    ax0.set_ylabel("count")
    ax0.set_title("Integer log-likelihood vs float, 20 000 draws")
    s = np.arange(4096, 4096 + 400)
    ax1.step(s, loglik.log2_entry(s - 1), where="post", label="LOG2[s − 1]")
    ax1.plot(s, 16 * np.log2(s / 16), color="gray", lw=0.8, label="16·log₂(s/16)")
    for t in T_k[(T_k >= s[0]) & (T_k <= s[-1])]:
        ax1.axvline(t, color="r", lw=0.5, ls=":")
    ax1.set_xlabel("s = Σ EXP2")
    ax1.set_title("LOG2 steps exactly at the thresholds Tₖ (dotted)")
    ax1.legend(fontsize=8)
    book.save(fig, "07_loglik.png")

# %% [markdown]
# ## 6. The integer recurrent cell: gating without sigmoid or tanh
#
# Chapter 6's float cell squashes its gate with a sigmoid and its candidate with a tanh. An
# integer model has neither, and nano-egg does without them. Its cell (`fp.egg_gru`,
# [spec §2.6](../docs/int8-spec.md)) holds the state $s$ as int8 **value × 127** (so $\pm127$ means
# $\pm1$) and, with $x$ the layer-normed input (value × 16):
#
# $$ f = \mathrm{clip}(W_fx + U_fs + b_f), \qquad g = f + 127 \in [0, 254], $$
# $$ \tilde s = \lfloor g\,s / 256 \rfloor, \qquad c = \mathrm{clip}(W_hx + U_h\tilde s + b_h), \qquad
#    s' = s + \lfloor g\,(c - s) / 256 \rfloor . $$
#
# (The four products are the scaled, perturbed integer matmuls of section 3.) Read it against the
# float cell $s' = s + f\odot(c - s)$:
#
# - **The gate** is $g/256 = (f + 127)/256 \in [0, 0.99]$: an *affine* map of the clipped int8 $f$.
#   Together with the clip it is a "hard sigmoid": 0 below $f = -127$, 1 (almost) above $127$,
#   a straight line in between. The division by 256 is a floor shift by 8 (`>> 8`), and
#   $\lfloor g\,s/256 \rfloor$ always fits an int8 because $g < 256$.
# - **The candidate** has no tanh: the clip to $[-127, 127]$ is the only squashing, a "hard tanh".
# - The new state $s + \lfloor g(c-s)/256 \rfloor$ is a convex combination of $s$ and $c$ (up to the
#   floor), so it stays in $[-127, 127]$ without another clip; nano-egg adds it in int8 arithmetic,
#   which would wrap, and never does on inputs in range.
#
# The slow twin, written from the formulas with Python integers, one entry at a time, against
# `fp.egg_gru` with random int8 matmuls standing in for the four weights:

# %%
H_c, P_c = 8, book.setting(64, 512)
W_c = {n: rng.integers(-127, 128, (H_c, H_c)).astype(np.int8) for n in ("Wf", "Uf", "Wh", "Uh")}


def mm_c(name, v):
    """The unperturbed scaled integer matmul of section 3, (P, H) int8 → (P, H) int8."""
    return intmm.do_mm(W_c[name], v)


x_c = rng.integers(-127, 128, (P_c, H_c)).astype(np.int8)                  # (P, H) int8, value × 16
s_c = rng.integers(-127, 128, (P_c, H_c)).astype(np.int8)                  # (P, H) int8, value × 127
bf_c, bh_c = rng.integers(-20, 21, H_c).astype(np.int8), rng.integers(-20, 21, H_c).astype(np.int8)
fast_c = fp.egg_gru(x_c, s_c, mm_c, bf_c, bh_c)

f_all = fp.clipped_add(mm_c("Wf", x_c), mm_c("Uf", s_c), bf_c)             # the gate, int8
slow_c = np.empty_like(s_c)
for p_ in range(P_c):
    gated = [(int(f_all[p_, j]) + 127) * int(s_c[p_, j]) // 256 for j in range(H_c)]   # Python's // is a floor
    c_row = fp.clipped_add(mm_c("Wh", x_c[p_:p_ + 1]), mm_c("Uh", np.array([gated], np.int8)), bh_c)[0]
    for j in range(H_c):
        g = int(f_all[p_, j]) + 127
        slow_c[p_, j] = int(s_c[p_, j]) + g * (int(c_row[j]) - int(s_c[p_, j])) // 256
print(f"egg_gru vs the formulas entry by entry: identical on {P_c * H_c} entries: {np.array_equal(fast_c, slow_c)}; "
      f"new state in [{fast_c.min()}, {fast_c.max()}]")
assert np.array_equal(fast_c, slow_c)
gate = (np.arange(-127, 128) + 127) / 256
print(f"gate g/256 at f = -127, -64, 0, 64, 127: {[round(float(gate[f + 127]), 3) for f in (-127, -64, 0, 64, 127)]}")

# %% [markdown]
# ### The MLP has no activation function: saturation is the nonlinearity
#
# Each EGG layer also has a feed-forward block, two int8 matmuls $H \to 4H \to H$
# (`npegg.models.egg.EggMLP`, [spec §2.7](../docs/int8-spec.md)), and between them there is **no**
# activation: no ReLU, no GELU. (The reference records `activation="relu"` in its settings but
# applies none; npegg does the same.) In floating point that would make the block linear, a
# single $H\times H$ matrix in disguise. In int8 it is not, because each scaled matmul of section 3
# ends in a clip to $[-127, 127]$: a hidden unit that would exceed the range saturates, and that
# hard clip is the nonlinearity. Check both halves of that sentence: the block is exactly the two
# matmuls, and no linear map reproduces it — unless the clip is taken out.

# %%
from npegg import keys as K                                                  # noqa: E402
from npegg.models.common import simple_es_tree_key                           # noqa: E402
from npegg.models.egg import EggMLP                                          # noqa: E402
from npegg.noise import Int8NoiseTable                                       # noqa: E402
from npegg.noiser import QEggRoll                                            # noqa: E402

H_m = 32
mlp = EggMLP.rand_init(K.key(7), H_m)                                        # nano-egg's initialisation
fz_m, nz_m = QEggRoll.init_noiser(mlp.params, 4, noise=Int8NoiseTable(seed=1, log2_size=16))
x_m = np.random.default_rng(70).integers(-127, 128, (4096, H_m)).astype(np.int8)   # (B, H) int8, value × 16
out_m = EggMLP.forward(QEggRoll, fz_m, nz_m, mlp.frozen_params, mlp.params,
                       simple_es_tree_key(mlp.params, K.key(8), mlp.scan_map), None, x_m)   # (B, H) int8
W0_m, W1_m = mlp.params["0"]["weight"], mlp.params["1"]["weight"]           # (4H, H), (H, 4H) int8
hidden_m = intmm.do_mm(W0_m, x_m)                                            # (B, 4H) int8, value × 16
assert np.array_equal(out_m, intmm.do_mm(W1_m, hidden_m))                    # two matmuls, nothing between


def unexplained(y, x):
    """1 − R² of the best affine map x → y (least squares): the part of y no linear map explains."""
    xa = np.c_[x.astype(np.float64), np.ones(len(x))]
    coef, *_ = np.linalg.lstsq(xa, y.astype(np.float64), rcond=None)
    return float((y - xa @ coef).var() / y.astype(np.float64).var())


def mm_unclipped(W, v):
    """The scaled integer matmul of section 3 with its clip taken out (int64, floors kept)."""
    return np.floor_divide(v.astype(np.int64) @ W.T.astype(np.int64), intmm.mm_divisor(W.shape[1]))


sat_m = float(np.mean(np.abs(hidden_m) == 127))
nonlin_m = unexplained(out_m, x_m)
nonlin_free = unexplained(mm_unclipped(W1_m, mm_unclipped(W0_m, x_m)), x_m)
print(f"EggMLP = do_mm(W1, do_mm(W0, x)) exactly: True; hidden units at ±127: {sat_m:.1%}")
print(f"variance no affine map explains: {nonlin_m:.2%} with the clips, {nonlin_free:.4%} without them (floors only)")
book.check("EggMLP hidden units saturated at ±127 (fraction)", sat_m, 0.12, 0.01)
book.check("EggMLP output variance no affine map explains", nonlin_m, 0.054, 0.005)
book.check("the same without the clips (floors only)", nonlin_free, 0, 1e-4)

# %% [markdown]
# On full-range int8 inputs about 12 % of the hidden units sit at ±127, and 5.4 % of the block's
# output variance is out of reach of any affine map; take the clips out and the floors alone
# leave 0.003 %: a linear map. So the int8 MLP is a nonlinear layer whose only nonlinearity is
# saturation — a "hard tanh" at each matmul's output, like the clip that replaced tanh in the cell
# above. ES does not mind that its derivative is zero wherever it saturates (chapter 11): it never
# takes one.
#
# ## 7. Exact integer matmuls through float BLAS
#
# NumPy's integer `matmul` does not call BLAS: it runs a plain loop, many times slower than the
# float kernels. (It also computes *in the operands' dtype*: an int8 @ int8 product wraps modulo
# 256 without a word. Always widen first.) But a float matmul of integer data is **exact** when
# every number it ever holds is an exactly representable integer:
#
# * float32 has a 24-bit significand, so it represents every integer $|n| \le 2^{24} = 16\,777\,216$,
#   and $2^{24} + 1$ is the first one it cannot;
# * float64 represents every integer $|n| \le 2^{53}$.
#
# BLAS may sum in any order and fuse multiply-adds, so we need a bound on *every* partial sum,
# not just the result. For a length-$K$ dot product each partial sum is at most
#
# $$ K \cdot \max|a| \cdot \max|b| , $$
#
# and if that is below $2^{24}$, the float32 matmul is exact whatever the order (`exact_dtype`
# picks float32, float64 or int64 from this bound). For int8 operands, $K \cdot 127 \cdot 127 < 2^{24}$
# holds up to $K = 1040$, which covers every matmul of nano-egg's sizes ($K \le 1024$).
#
# The demonstration below puts the bound to work: all-127 vectors of length $K$ have the dot
# product $16129\,K$, which float32 gets exactly for $K \le 1040$ and first gets *wrong* at
# $K = 1041$ (16 790 289 is odd and above $2^{24}$, where float32's spacing is 2). Random signs
# rarely come near the bound, so the same float32 matmul is usually still right past it — but
# "usually" is not a guarantee, and `exact_matmul` falls back to float64 there.

# %%
print("float32(2²⁴) =", int(np.float32(2**24)), "  float32(2²⁴ + 1) =", int(np.float32(2**24 + 1)))
print("int8 @ int8 in NumPy wraps:", np.array([100, 100], np.int8) @ np.array([1, 1], np.int8), "(true 200)")
Ks = np.arange(1000, 1100)
errors = []
for K in Ks:
    v = np.full(K, 127, np.float32)
    errors.append(int(v @ v) - 16129 * int(K))
errors = np.array(errors)
first_bad = Ks[np.flatnonzero(errors)[0]]
print(f"all-127 dot products in float32: exact up to K = {first_bad - 1}, first wrong at K = {first_bad} "
      f"(off by {errors[Ks == first_bad][0]}); exact_dtype(1040, 127, 127) = {intmm.exact_dtype(1040, 127, 127).__name__}, "
      f"exact_dtype(1041, 127, 127) = {intmm.exact_dtype(1041, 127, 127).__name__}")

n_trials = book.setting(50, 400)
K_far = 4096
wrong = 0
for _ in range(n_trials):
    u = rng.integers(-127, 128, K_far)
    wrong += int(u.astype(np.float32) @ u[::-1].astype(np.float32)) != int(u @ u[::-1])
print(f"random int8 vectors at K = {K_far} (4× past the bound): float32 wrong in {wrong}/{n_trials} trials")

big = 94_906_267                                           # ≈ 2^26.5, so big² ≈ 2^53
print(f"float64: {big}² = {big * big} exactly, float64 gives {int(np.float64(big) * np.float64(big))}")

# %% [markdown]
# Finally the speed, measured **side by side**: the two versions are timed interleaved (A, B,
# B, A, …) in the same process, several times, and we report medians, so that a change of load
# on a shared machine hits both. Each matmul is int8 data of the shapes a population forward
# produces, $(P \cdot T, I) @ (I, O)$; "BLAS" is `exact_matmul` (the float32 conversion included),
# "int64" is NumPy's widened integer matmul. Both results are compared with `np.array_equal`.

# %%
def interleaved(f, g, repeats):
    """Median seconds of f and of g, timed alternately (f g g f f g …)."""
    tf, tg = [], []
    for r in range(repeats):
        for fn, acc in ((f, tf), (g, tg)) if r % 2 == 0 else ((g, tg), (f, tf)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return float(np.median(tf)), float(np.median(tg))


shapes = book.setting([(1024, 64, 256), (2048, 256, 256)],
                      [(4096, 64, 256), (4096, 256, 256), (2048, 256, 1024), (4096, 1024, 256)])
timings = []
for m, kk, n in shapes:
    a = rng.integers(-127, 128, (m, kk)).astype(np.int8)
    b = rng.integers(-127, 128, (kk, n)).astype(np.int8)
    assert np.array_equal(intmm.exact_matmul(a, b), a.astype(np.int64) @ b.astype(np.int64))
    t_blas, t_int = interleaved(lambda: intmm.exact_matmul(a, b, np.int32),
                                lambda: a.astype(np.int64) @ b.astype(np.int64), 3)
    timings.append((f"({m}, {kk}) @ ({kk}, {n})", t_blas, t_int))
    print(f"({m:5d}, {kk:4d}) @ ({kk:4d}, {n:4d}):  BLAS float32 {t_blas * 1e3:8.2f} ms   int64 {t_int * 1e3:9.2f} ms   "
          f"ratio {t_int / t_blas:5.0f}×   (equal: True)")

if plt:
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax0.plot(Ks, errors, "o", ms=3)
    ax0.axvline(1040.5, color="r", lw=0.8, ls=":", label="K·127² = 2²⁴")
    ax0.set_xlabel("K (length of the dot product)")
    ax0.set_ylabel("float32 result − exact")
    ax0.set_title("All-127 dot products in float32")
    ax0.legend(fontsize=8)
    labels = [t[0] for t in timings]
    xpos = np.arange(len(timings))
    ax1.bar(xpos - 0.2, [t[1] * 1e3 for t in timings], 0.4, label="exact_matmul (float32 BLAS)")
    ax1.bar(xpos + 0.2, [t[2] * 1e3 for t in timings], 0.4, label="int64 matmul")
    ax1.set_yscale("log")
    ax1.set_xticks(xpos, labels, fontsize=7)
    ax1.set_ylabel("ms (median, interleaved)")
    ax1.set_title("Same exact result, two speeds")
    ax1.legend(fontsize=8)
    book.save(fig, "07_blas_exactness.png")

# %% [markdown]
# ## Summary
#
# - An int8 holds value × 16; sums are widened and **saturated** (`clipped_add`), never wrapped.
# - Every division and shift is a **floor**; truncation differs by one on negative non-multiples,
#   and the floor makes antithetic perturbations asymmetric.
# - The matmul is $\mathrm{clip}(\lfloor x W^\top / (16\lfloor\sqrt I\rfloor) \rfloor)$; the layer norm divides
#   by the floored mean $|x|$, by formula instead of a 16 MiB table (equal on all entries).
# - The integer log-likelihood is never below the exact one and at most about 2 units (1/8 bit)
#   above it — each of the two floors can cost about one unit; its LOG2 needs 449 exact
#   thresholds instead of 1 GiB (equal at all $2^{28}$ indices in the full setting).
# - The integer recurrent cell gates with $g = f + 127$ and a floor shift by 8 instead of a
#   sigmoid, and uses the int8 clip instead of tanh. The MLP has no activation at all: the clips
#   of its two matmuls (saturation) are its nonlinearity.
# - A float32 matmul of int8 data is exact while $K \cdot 127^2 < 2^{24}$ ($K \le 1040$), and
#   one to two orders of magnitude faster than NumPy's integer matmul (this run's ratios are
#   printed above).
#
# `npegg.models.egg` assembles these pieces into nano-egg's EGG model exactly as [spec §3](../docs/int8-spec.md) describes
# (embedding; layers of LN → gated cell → residual → LN → MLP → residual; output LN; head).
#
# ## Exercises
#
# Solutions, checked by the test suite: `tutorials/solutions/07_integers_only.py`.
#
# 1. **Floors compose.** Prove that $\lfloor\lfloor y/a\rfloor/b\rfloor = \lfloor y/(ab)\rfloor$ for integers
#    $y$ and $a, b > 0$ (so `(y >> 4) >> 4 == y >> 8`, and `do_mm` may floor its low-rank term
#    separately), check it on all $|y| \le 5000$, and find a counterexample for rounding to nearest.
# 2. **The worst logit.** For every $\ell \in [-127, 127]$, compute the integer log-likelihood of 256
#    equal logits $\ell$ (exact answer: $-128$ units). Which $\ell$ is worst, and by how much?
# 3. **Another exactness bound.** For int8 activations times int4 weights ($|w| \le 7$), up to
#    which length $K$ is a float32 dot product exact? Check your $K$ with `intmm.exact_dtype` and
#    show a float32 dot product that goes wrong at $K + 1$.
#
# **Next**, chapter 8 trains that model without ever leaving the integers; chapter 9 turns the
# bit-exactness into a tool for checking other implementations.

# %%
book.finish(FIGURES)
