# %% [markdown]
# # Chapter 4 — Noisers and models: how npegg is put together
#
# Chapters 1–3 wrote ES by hand. npegg organises the same mathematics the way the reference JAX
# code (HyperscaleES, and the seed notebook "The EGGROLL Recipe from Scratch") does, so that a
# model is written once and any ES variant can drive it.
#
# **What you will learn.**
#
# 1. The two interfaces. A **Model** says what to compute; a **Noiser** decides how each
#    parameter is perturbed and updated. Neither keeps state.
# 2. `rand_init` → `(frozen_params, params, scan_map, es_map)`, the `es_map` codes, and the
#    `iterinfo` argument that switches a forward pass between the plain model (`None`) and the
#    perturbed population (`(epoch, members)`).
# 3. Keys: threefry, bit for bit the same as JAX's, and one key per parameter leaf.
# 4. Why noise is *rebuilt* from (seed, leaf key, epoch, member) instead of stored: the same bits
#    whoever asks, and how much memory that saves at realistic sizes. Antithetic pairs and
#    `noise_reuse`.
# 5. Building a model from atoms, and writing your own noiser, run through the same loop.
#
# **Run it**: `python tutorials/04_noisers_and_models.py` (or as a notebook). Figures go to
# `$NPEGG_TUTORIAL_OUT` (default `tutorials/figures/`); `NPEGG_TUTORIAL_SMALL=1` runs a small
# setting. The full setting took **19 s** on this machine (2 cores, heavily shared with other jobs).

# %%
import numpy as np

import _book as book
from npegg import keys as K
from npegg.models import (EMB_PARAM, EXCLUDED, MM_PARAM, MLP, PARAM, Embedding, LayerNorm, Linear, Model,
                          Parameter, call_submodule, merge_inits, simple_es_tree_key)
from npegg.models.common import ACTIVATIONS
from npegg.noise import NoiseTable, start_indices
from npegg.noiser import EggRoll, Noiser, OpenES
from npegg.tree import flatten, tree_map, unflatten

SMALL = book.choose_setting(None)  # None: NPEGG_TUTORIAL_SMALL decides; True = small (seconds), False = full
FIGURES = ["04_noise_table.png", "04_memory.png", "04_custom_noiser.png"]
plt = book.pyplot()
np.set_printoptions(precision=4, suppress=True)
rng = np.random.default_rng(4)
CODE = {PARAM: "PARAM", MM_PARAM: "MM_PARAM", EMB_PARAM: "EMB_PARAM", EXCLUDED: "EXCLUDED"}

# %% [markdown]
# ## 1. Two interfaces, no state
#
# Both are classes of `classmethod`s (the reference's functional style: a class is a namespace of
# pure functions, and a subclass overrides some of them). Everything that changes is passed in
# and returned. With $P$ the population (always axis 0 when perturbed):
#
# | Noiser method | does | shapes |
# |---|---|---|
# | `init_noiser(params, sigma, lr, ...)` | settings and state | → `(frozen_noiser_params, noiser_params)` |
# | `do_mm(…, W, key, iterinfo, x)` | $xW^\top$, perturbed per member | W (O, I), x (P, …, I) → (P, …, O) |
# | `do_Tmm(…, W, key, iterinfo, x)` | $xW$ | W (I, O) |
# | `do_emb(…, E, key, iterinfo, tokens)` | rows $E[t]$ | E (V, D), tokens (P, …) → (P, …, D) |
# | `get_noisy_standard(…, p, key, iterinfo)` | any other tensor (bias, norm weight) | → p, or (P, *p.shape) |
# | `convert_fitnesses(frozen, state, raw)` | fitness shaping (chapter 2) | (P,) → (P,) |
# | `do_updates(frozen, state, params, keys, f, iterinfos, es_map)` | ES estimate → optimizer → new params | → `(noiser_params, params)` |
#
# A **Model** has `rand_init(key, ...)` and `forward(noiser, frozen_noiser_params, noiser_params,
# frozen_params, params, es_tree_key, iterinfo, *inputs)`, and its `_forward` touches parameters
# *only* through the noiser's methods. That is the whole trick: the model never knows whether it
# is being perturbed, or how. The base `Noiser` perturbs nothing — it is the plain model.
#
# ## 2. A model: `rand_init` and `es_map`

# %%
init = MLP.rand_init(K.fold_in(K.key(1), 0), in_dim=1, out_dim=1, hidden_dims=[16, 16], activation="pqn")
frozen_params, params, scan_map, es_map = init
print("frozen_params:", frozen_params)
for path, leaf in flatten(params).items():
    print(f"  {path:10s} shape {str(leaf.shape):9s} es_map {CODE[flatten(es_map)[path]]:9s} "
          f"scan_map {flatten(scan_map)[path]}")

# %% [markdown]
# - `params` is a nested dict of arrays, flattened here to `/`-paths in sorted-key order (JAX's
#   order, which matters for keys below).
# - `frozen_params` holds configuration that is not trained (the activation's name).
# - `es_map` says, per leaf, how ES treats it: `MM_PARAM` (a matrix used in a matmul: low-rank
#   noise, chapter 3), `PARAM` (any other tensor: full-rank noise $s\sigma e$, not divided by $\sqrt r$),
#   `EMB_PARAM` (an embedding table: low-rank noise, rows looked up), `EXCLUDED` (never updated).
# - `scan_map` marks leaves stacked over layers (`(0,)`: one key per layer); `()` means none.
#
# The plain forward is the base `Noiser` or, equivalently, any noiser with `iterinfo=None`.
# Check it against the network written out in NumPy:

# %%
es_key = K.fold_in(K.key(1), 1)
es_tree_key = simple_es_tree_key(params, es_key, scan_map)      # one key per leaf (section 4)
x = np.linspace(-2, 2, 5, dtype=np.float32)[:, None]            # (B, 1)
plain = MLP.forward(Noiser, {}, {}, frozen_params, params, es_tree_key, None, x)

h = x
pqn = ACTIVATIONS["pqn"]                                        # relu(layer_norm(h)), the notebook's choice
for t in ("0", "1", "2"):
    h = h @ params[t]["weight"].T + params[t]["bias"]
    if t != "2":
        h = pqn(h)
table = NoiseTable(seed=0)
frozen_nz, nz_state = EggRoll.init_noiser(params, sigma=0.5, lr=0.1, rank=2, noise=table)
plain_egg = MLP.forward(EggRoll, frozen_nz, nz_state, frozen_params, params, es_tree_key, None, x)
print(f"Noiser forward vs hand-written: max diff {np.abs(plain - h).max():.1e};  "
      f"EggRoll with iterinfo=None: {np.abs(plain_egg - h).max():.1e}")

# %% [markdown]
# ## 3. The population forward: `iterinfo = (epoch, members)`
#
# With `iterinfo = (epoch, members)`, `members` an integer array of length $P$, every input gets a
# leading axis $P$ and row $p$ is computed with the parameters perturbed for thread id
# `members[p]`. One call runs the whole population (the notebook's `jax.vmap` over members, here
# explicit). Its slow twin: build member $m$'s perturbed parameters by hand from the noise source
# and run the plain model on them.

# %%
def member_params(m, epoch, sigma, rank):
    """Member m's perturbed parameter tree, materialised (the slow twin)."""
    s = 1.0 if m % 2 == 0 else -1.0                             # antithetic sign
    out = {}
    for path, p in flatten(params).items():
        key = flatten(es_tree_key)[path]
        if flatten(es_map)[path] == MM_PARAM:
            A, B = table.lowrank(key, epoch, np.array([m]), p.shape, rank, 1)   # (1, O, R), (1, I, R)
            out[path] = p + s * sigma / np.sqrt(rank) * A[0] @ B[0].T
        else:
            e = table.full(key, epoch, np.array([m]), p.shape, 1)               # (1, *shape)
            out[path] = p + s * sigma * e[0]
    return unflatten(out)


P, epoch = 8, 3
members = np.arange(P)
xs = np.broadcast_to(x, (P,) + x.shape)                          # (P, B, 1): every member sees the batch
pop = MLP.forward(EggRoll, frozen_nz, nz_state, frozen_params, params, es_tree_key, (epoch, members), xs)
twin = np.stack([MLP.forward(Noiser, {}, {}, frozen_params, member_params(m, epoch, 0.5, 2), es_tree_key, None, x)
                 for m in members])
print(f"population forward {pop.shape} vs per-member materialised params: max diff {np.abs(pop - twin).max():.1e}")
some = np.array([5, 2])
part = MLP.forward(EggRoll, frozen_nz, nz_state, frozen_params, params, es_tree_key, (epoch, some), xs[:2])
print(f"members [5, 2] alone give the same rows as in the full population: {np.array_equal(part, pop[some])}")

# %% [markdown]
# The second check is the heart of the design: member 5's perturbation does not depend on who
# else is in the population, or in what order. Which brings us to keys and noise.
#
# ## 4. Keys: threefry, as in JAX
#
# npegg never draws from a random *stream*. Every random quantity is a function of a **key**, a
# pair of 32-bit words, through the threefry-2x32 block cipher that JAX uses by default
# (`npegg/keys.py` spells out the 20 rounds). From it:
# `key(seed) = (0, seed)`, `fold_in(k, d) = threefry(k, (0, d))`, `split(k, n)[i] = fold_in(k, i)`.
# (That last identity holds for JAX's *partitionable* threefry, the flag
# `jax_threefry_partitionable`, on by default in current JAX releases and the mode npegg mirrors.
# With the flag off, JAX's `split` derives its sub-keys another way; `fold_in` is the same in both.)
#
# Two checks that this is the real thing. Threefry's published known-answer vectors (Random123,
# Salmon et al. 2011), and the leaf keys that the reference JAX code recorded for the float parity
# vectors (an MLP 3 → 8 → 8 → 2 with model seed 5; `shared/parity/float_eggroll.npz`):

# %%
kat = [((0x0, 0x0), (0x0, 0x0), (0x6B200159, 0x99BA4EFE)),
       ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
       ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]
for k, ctr, want in kat:
    got = K.threefry2x32(np.array(k, np.uint32), np.uint32(ctr[0]), np.uint32(ctr[1]))
    print(f"threefry2x32(key={k[0]:#010x},{k[1]:#010x}) -> ({int(got[0]):#010x}, {int(got[1]):#010x}) "
          f"{'ok' if (int(got[0]), int(got[1])) == want else 'MISMATCH'}")

recorded = {"0/bias": (843925894, 658080391), "0/weight": (1989812028, 1278715772),   # from the JAX run
            "1/bias": (1758636565, 1947230946), "1/weight": (3228849613, 2227882949),
            "2/bias": (3066574816, 2850749148), "2/weight": (624633505, 1369528468)}
ref_init = MLP.rand_init(K.fold_in(K.key(5), 0), in_dim=3, out_dim=2, hidden_dims=[8, 8], activation="relu")
ours = flatten(simple_es_tree_key(ref_init.params, K.fold_in(K.key(5), 1), ref_init.scan_map))
print("leaf keys equal to the reference's recorded ones:",
      all(tuple(int(v) for v in ours[p]) == recorded[p] for p in recorded))

# %% [markdown]
# `simple_es_tree_key(params, es_key, scan_map)` gives leaf $j$ (in sorted-path order) the key
# `split(es_key, n_leaves)[j]`, and a layer-stacked leaf one key per layer. The model's
# initialisation key is `fold_in(key(seed), 0)`, the ES keys come from `fold_in(key(seed), 1)`,
# as in the notebook.
#
# ## 5. Noise is rebuilt, not stored
#
# Where does member $n$'s noise for a leaf come from? npegg keeps one shared **table** of
# $2^{23}$ float32 numbers (32 MiB; `npegg/noise.py`), built from integers only so that every
# backend gets the same bits. Member $n$'s noise for a leaf with key $k$ at epoch $e$ is a slice
# of the table starting at
# $$\text{start} = \big(\text{fold\_in}(k, t_e)_0 \;\oplus\; \text{hash}(\lfloor n/2\rfloor)\big) \bmod 2^{23},
#   \qquad t_e = \begin{cases}\lfloor e/\rho\rfloor & \rho \ge 1\\ 0 & \rho = 0,\end{cases}$$
# with $\rho$ = `noise_reuse` and hash an integer mixing function (`npegg/noise.py` writes both out). For a matrix the slice holds
# $(O+I)r$ numbers, read as $B$ then $A$. Three consequences:
#
# - *Anyone can rebuild it*: the forward pass and, later, the update each regenerate exactly the
#   noise they need, in any order, for any subset of members, on any machine.
# - *Antithetic pairs* are built in: $\lfloor n/2\rfloor$ is the same for members $2k$ and $2k+1$, so
#   they read the same slice, and the noiser applies the sign $s_n=\pm1$.
# - *`noise_reuse`* $\rho$: the noise changes every $\rho$ epochs; $\rho=0$ means $t_e = 0$ for
#   every epoch, so it never changes.
#
# The table entries are not Gaussian: each is a sum of 8 random bytes, centred and scaled to
# variance 1 (an Irwin–Hall variable), which needs no `log` or `cos` whose last bit could differ
# between machines. Its mean is 0 and its variance 1, exactly — but is that enough? Chapter 1's
# derivation of $\nabla F_\sigma = \mathbb{E}[F(\theta+\sigma\varepsilon)\varepsilon]/\sigma$ differentiated the
# *Gaussian density*; for other noise it does not hold as such. What still holds is the Taylor
# argument: the antithetic quotient is $\langle\nabla F,\varepsilon\rangle\varepsilon + \frac{\sigma^2}{6}D^3F[\varepsilon,\varepsilon,\varepsilon]\,\varepsilon + O(\sigma^4)$,
# and its first term has mean $\nabla F$ for any noise with identity covariance. The second is a
# fourth moment, and there the table differs from a Gaussian: its kurtosis is below 3.

# %%
t = table.table
kurt = np.mean(t.astype(np.float64) ** 4) / np.mean(t.astype(np.float64) ** 2) ** 2
print(f"table: {t.size:,} float32 entries ({t.nbytes / 2**20:.0f} MiB), mean {t.mean():+.5f}, "
      f"variance {t.var():.5f}, kurtosis {kurt:.3f} (Gaussian: 3), max |entry| {np.abs(t).max():.3f}")
book.check("kurtosis of the noise table", kurt, 2.85, 0.005)       # Irwin–Hall(8): 3 − 1.2/8 = 2.85 exactly

# %% [markdown]
# So the table's estimate is biased differently from the Gaussian one, by a term of order $\sigma^2$.
# In one dimension we can compute it *exactly*: an entry is $(S-1020)\,C$ with $S$ a sum of eight
# independent bytes, whose distribution is the eight-fold convolution of the uniform one. Expand
# both estimators; they differ only through $\mathbb{E}\varepsilon^4$:
# $$\mathbb{E}_{\text{table}}[\text{quotient}] - \mathbb{E}_{\text{Gauss}}[\text{quotient}] \approx \frac{\sigma^2}{6}\,F'''(x)\,(\kappa - 3),\qquad \kappa = 2.85 .$$
# (In $d$ dimensions only the diagonal third derivatives $\partial_i^3F$ enter, because only
# $\mathbb{E}\varepsilon_i^4$ differs.) Chapter 1's bumpy function, at $x = 2$:

# %%
pmf = np.ones(256) / 256
for _ in range(7):
    pmf = np.convolve(pmf, np.ones(256) / 256)                   # (2041,) distribution of S = 8 bytes
eps_vals = (np.arange(pmf.size) - 1020) * float(np.float32(1 / np.sqrt(43690)))   # the table's values
print(f"exact moments of a table entry: mean {pmf @ eps_vals:.1e}, variance {pmf @ eps_vals**2:.6f}, "
      f"kurtosis {pmf @ eps_vals**4:.4f}")


def F1(x):
    return -0.1 * x**2 + np.cos(3 * x)


x_k = 2.0
for sig_k in (0.05, 0.1, 0.2):
    quotient = (F1(x_k + sig_k * eps_vals) - F1(x_k - sig_k * eps_vals)) / (2 * sig_k) * eps_vals
    table_mean = pmf @ quotient                                    # exact expectation under the table
    gauss_mean = -0.2 * x_k - 3 * np.exp(-4.5 * sig_k**2) * np.sin(3 * x_k)   # = F_sigma'(x), chapter 1
    predicted = sig_k**2 / 6 * 27 * np.sin(3 * x_k) * (pmf @ eps_vals**4 - 3)  # F''' = 27 sin 3x
    print(f"sigma = {sig_k}: table {table_mean:+.6f}, Gaussian {gauss_mean:+.6f}, "
          f"difference {table_mean - gauss_mean:+.2e}, predicted (sigma^2/6) F''' (kappa - 3) = {predicted:+.2e}")
    # the dropped terms are O(σ⁴), i.e. O(σ²) relative to the prediction (9σ² sets their scale here: F has cos 3x)
    book.check(f"kurtosis term / prediction, sigma = {sig_k}", (table_mean - gauss_mean) / predicted, 1, 7 * sig_k**2)
    if sig_k == 0.1:
        book.check("table - Gaussian expectation at sigma = 0.1", table_mean - gauss_mean, 0.002, 0.0005)

# %% [markdown]
# The difference is the predicted kurtosis term, to within the $O(\sigma^4)$ terms we dropped:
# the prediction's relative error grows like $\sigma^2$, as it should. The term is small (about
# $0.002$ at $\sigma = 0.1$, for a gradient of about 0.4) and of the same order
# $\sigma^2$ as the smoothing bias that Gaussian noise has anyway. It is the same mechanism as
# chapter 3's low-rank bias, where $AB^\top/\sqrt r$ has excess kurtosis $6/r$; here the excess is
# $-0.15$. What the table guarantees is: mean 0, covariance $I$, odd moments 0 (it is
# symmetric), and a fourth moment 5% below the Gaussian one.

# %%
if plt:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(t[:1_000_000], bins=200, density=True, alpha=0.6, label="noise table (first 10⁶ entries)")
    g = np.linspace(-5, 5, 400)
    ax.plot(g, np.exp(-g**2 / 2) / np.sqrt(2 * np.pi), "k", lw=1, label="standard normal density")
    ax.set(xlabel="value", ylabel="density", title="npegg's noise table: Irwin–Hall(8), scaled")
    ax.legend(fontsize=8)
    book.save(fig, "04_noise_table.png")

# %% [markdown]
# Same bits whoever asks: a fresh table object, a lone member, a reversed population.

# %%
key = es_tree_key["1"]["weight"]
shape = params["1"]["weight"].shape                               # (16, 16)
A_all, B_all = table.lowrank(key, 7, np.arange(64), shape, 2, 1)  # the whole population at epoch 7
A_one, B_one = NoiseTable(seed=0).lowrank(key, 7, np.array([37]), shape, 2, 1)   # another table object
A_rev, _ = table.lowrank(key, 7, np.arange(64)[::-1], shape, 2, 1)
print("member 37 alone, from a fresh table:  identical bits:", np.array_equal(A_one[0], A_all[37]) and
      np.array_equal(B_one[0], B_all[37]))
print("population in reverse order:          identical bits:", np.array_equal(A_rev[::-1], A_all))
print("members 36 and 37 share their factors (antithetic pair):", np.array_equal(A_all[36], A_all[37]))
print("start indices of members 0..5:", start_indices(key, 7, np.arange(6), 1, table.size))
for rho in (1, 2, 0):
    a0, _ = table.lowrank(key, 0, np.array([0]), shape, 2, rho)
    a1, _ = table.lowrank(key, 1, np.array([0]), shape, 2, rho)
    a2, _ = table.lowrank(key, 2, np.array([0]), shape, 2, rho)
    print(f"noise_reuse = {rho}: epoch 0 == epoch 1: {np.array_equal(a0, a1)!s:5}  epoch 0 == epoch 2: "
          f"{np.array_equal(a0, a2)}")

# %% [markdown]
# ### Why reuse noise: carried states and the truncation bias
#
# Why would anyone keep the same noise for several epochs? Because of recurrent state carried
# *across* epochs. A language model reads its stream in windows of $T$ bytes per epoch (chapter 6)
# and each member keeps its hidden state from one epoch to the next. At epoch $e$ member $n$ starts
# from a state $h$ that earlier epochs produced — with **earlier** noise. With fresh noise each
# epoch ($\rho = 1$), $h$ does not depend on this epoch's $\varepsilon_n$, so the antithetic quotient
# only sees how the parameters act *inside* the window: in expectation ES returns the gradient
# with $h$ held fixed, the same truncation as truncated backprop through time. The influence of
# the parameters on the loss through the carried state is lost, a **bias** that no population
# size removes. With noise reused for $\rho$ epochs a member has carried its perturbation since the
# start of the current block of $\rho$ epochs, so the estimate sees that far back (the idea of
# Noise-Reuse ES, Vicol et al. 2023, which the paper builds on). npegg, like nano-egg, defaults to
# $\rho = 1$ (`TrainConfig.noise_reuse`).
#
# Measured on the smallest recurrence there is: $h_{t+1} = a h_t + b x_t$, two parameters
# $\theta = (a, b)$, loss $\sum_t (h_{t+1} - y_t)^2$ against targets made with $a = 0.9$, $b = 1$;
# $K = 8$ epochs of $T = 4$ steps, the state carried between them; ES with antithetic pairs on the
# loss of the last epoch. The exact gradients come from central differences of the unrolled loss,
# with the state at the start of epoch $s$ held fixed ($s = 0$: the full gradient):

# %%
K_tb, T_tb, sig_tb = 8, 4, 1e-3
tb_rng = np.random.default_rng(41)
x_tb = tb_rng.standard_normal(K_tb * T_tb)                         # (K·T,) inputs
y_tb = np.zeros(K_tb * T_tb)                                       # (K·T,) targets from a = 0.9, b = 1
h_tb = 0.0
for t_ in range(K_tb * T_tb):
    h_tb = 0.9 * h_tb + x_tb[t_]
    y_tb[t_] = h_tb
theta_tb = np.array([0.6, 0.7])                                    # (a, b): where we estimate


def tb_chunk(theta, h, k):
    """Epoch k of the recurrence from state h: theta (..., 2), h (...) -> (its loss, the state after)."""
    loss = 0.0
    for t_ in range(k * T_tb, (k + 1) * T_tb):
        h = theta[..., 0] * h + theta[..., 1] * x_tb[t_]
        loss = loss + (h - y_tb[t_]) ** 2
    return loss, h


def tb_exact(start, e=1e-6):
    """d(loss of the last epoch)/dθ through epochs start..K−1, the state entering epoch `start` held fixed."""
    def last(theta):
        h = 0.0
        for k in range(K_tb):
            loss, h = tb_chunk(theta if k >= start else theta_tb, h, k)
        return loss
    return np.array([(last(theta_tb + e * u) - last(theta_tb - e * u)) / (2 * e) for u in np.eye(2)])


def tb_es(rho, pairs, seed=0):
    """The antithetic ES estimate (and its standard error) of the last epoch's gradient, members carrying
    their states across epochs, the noise changing every rho epochs."""
    h = np.zeros(2 * pairs)                                         # (P,) every member's carried state
    sign = np.tile([1.0, -1.0], pairs)                              # (P,) antithetic signs
    for k in range(K_tb):
        eps = np.random.default_rng([seed, k // rho]).standard_normal((pairs, 2))   # this block's noise
        loss, h = tb_chunk(theta_tb + sig_tb * sign[:, None] * np.repeat(eps, 2, axis=0), h, k)
    terms = ((loss[0::2] - loss[1::2]) / (2 * sig_tb))[:, None] * eps             # (N, 2)
    return terms.mean(0), terms.std(0) / np.sqrt(pairs)


g_tb_full = tb_exact(0)
tb_pairs = book.setting(50_000, 400_000)
tb_bias = {}
print(f"full gradient {np.round(g_tb_full, 3)}")
for rho in (1, 2, 4, 8):
    start = rho * ((K_tb - 1) // rho)                               # where the last epoch's noise block began
    g_trunc = tb_exact(start)
    g_es, se = tb_es(rho, tb_pairs)
    tb_bias[rho] = np.linalg.norm(g_trunc - g_tb_full) / np.linalg.norm(g_tb_full)
    print(f"noise_reuse {rho}: ES {np.round(g_es, 3)} ± {np.round(se, 3)}; gradient truncated at epoch {start} "
          f"{np.round(g_trunc, 3)}, off the full one by {tb_bias[rho]:.2%}")
    book.check(f"ES vs the gradient truncated at its noise block, noise_reuse {rho}, in standard errors",
               np.abs((g_es - g_trunc) / se).max(), 0, 4)          # two components, each within 4 s.e.
book.check("truncation bias with fresh noise every epoch (noise_reuse 1), relative", tb_bias[1], 0.19, 0.005)
book.check("truncation bias with noise_reuse 2, relative", tb_bias[2], 0.017, 0.001)
assert tb_bias[8] < 1e-6                                            # one block covers every epoch: no truncation

# %% [markdown]
# In every case ES returns, within its sampling error, the gradient truncated where its noise
# last changed: with fresh noise every epoch that is 19 % away from the full gradient here (the
# state carries a memory $a^T$ per epoch), with noise reused for 2 epochs 1.7 %, and with one
# block for the whole run none. The bias shrinks as fast as the recurrence forgets, so a few
# epochs of reuse suffice for a short memory; the price is fewer distinct directions per
# epoch block, since the same noise is explored again.
#
# ### Slices can overlap
#
# Each pair reads $L = (O+I)r$ consecutive entries from its start, and the table is finite, so two
# pairs' slices can overlap. Were the starts independent and uniform on a table of $T$ entries,
# two given pairs would overlap with probability $(2L-1)/T$, and $N$ pairs would have about
# $$\binom N2\frac{2L-1}{T}$$
# overlapping pairs of pairs: about 256 per leaf and epoch for a $256\times256$ matrix at rank 1
# ($L = 512$) and $P = 4096$ ($N = 2048$). So **members' noise is not exactly independent**. Where
# two slices overlap with an offset $\delta\ne0$, the same table entries land in *different*
# positions of the two members' factors: entrywise the perturbations stay uncorrelated (an entry
# is never multiplied by itself), but they are not independent. Two pairs with the *same* start
# would have identical noise.
#
# The hash does better than uniform starts. For a pair index $q < 2^{16}$ it is
# $q\cdot\mathtt{0x45d9f3b} \bmod 2^{32}$, and the start keeps its low 23 bits XOR a constant:
# multiplication by an odd number is a bijection modulo $2^{23}$, so **no two of the first $2^{16}$
# pairs ever share a start**, and the starts form a lattice that spreads them more evenly than
# chance. Counted on the start indices themselves:

# %%
def overlaps(starts, length, size):
    """Pairs (i < j) of slices [start, start + length) on a circular table of `size` that share an entry."""
    s_ = np.sort(starts)
    ext = np.concatenate([s_, s_ + size])                           # unroll the circle once
    return int(np.sum(np.searchsorted(ext, s_ + length, side="left") - np.arange(1, s_.size + 1)))


N_ov, L_ov, ov_epochs = 2048, 512, book.setting(10, 50)
hashed, uniform, shared = [], [], 0
for e in range(ov_epochs):
    st = start_indices(key, e, np.arange(0, 2 * N_ov, 2), 1, table.size)   # (N,) one start per pair
    hashed.append(overlaps(st, L_ov, table.size))
    uniform.append(overlaps(rng.integers(0, table.size, N_ov), L_ov, table.size))
    shared += N_ov - np.unique(st).size
expected_ov = N_ov * (N_ov - 1) / 2 * (2 * L_ov - 1) / table.size
print(f"N = {N_ov} pairs, slices of {L_ov}, {ov_epochs} epochs: overlapping pairs of pairs per epoch "
      f"{np.mean(hashed):.1f} with npegg's hash, {np.mean(uniform):.1f} with uniform random starts "
      f"(predicted {expected_ov:.1f}); pairs sharing a start: {shared}")
# uniform starts: a near-Poisson count, so its mean over the epochs has standard error sqrt(expected / epochs)
book.check("uniform-start overlaps / prediction", np.mean(uniform) / expected_ov, 1, 4 / np.sqrt(expected_ov * ov_epochs))
book.check("predicted overlaps for N = 2048, L = 512", expected_ov, 256, 1)
assert shared == 0 and np.mean(hashed) < np.mean(uniform)
book.check("hashed / uniform overlaps", np.mean(hashed) / np.mean(uniform), 0.25, 0.1)

# %% [markdown]
# So at this size about a quarter as many overlaps as chance would give, and never a shared start:
# a small fraction of the pairs' terms are dependent, which does not bias the estimate (the
# perturbations stay uncorrelated) and adds a negligible amount of variance. Larger leaves and
# populations overlap more; the table's size is the knob (`NoiseTable(log2_size=...)`).

# %% [markdown]
# ### What storing the noise would cost
#
# Count, for a population of $P$, the noise a training step would have to keep if it were
# generated once and stored until the update: full-rank (OpenES), low-rank factors (EGGROLL),
# or neither (npegg: the table plus one key per leaf; the forward builds each layer's factors
# when it needs them, and the update rebuilds them in chunks of at most 64 MiB). Three models:
# chapter 5's regression MLP, a 6-layer byte-level language model of width 256, and a
# GPT-2-small-sized stack (12 layers of width 768, 50257-token vocabulary). The two larger ones are
# counted as transformer-shaped stacks: per layer a (3D × D) and a (D × D) attention matrix and a
# 4× MLP, plus embedding and head.

# %%
def matrix_shapes(width, layers, vocab=None):
    """(O, I) of every matrix in a pre-norm transformer-like stack (attention + 4x MLP)."""
    per_layer = [(3 * width, width), (width, width), (4 * width, width), (width, 4 * width)]
    shapes = per_layer * layers
    if vocab:
        shapes += [(vocab, width), (vocab, width)]              # embedding and head
    return shapes


models = {"regression MLP 1-64-64-64-1": [(64, 1), (64, 64), (64, 64), (1, 64)],
          "byte LM, 6 x 256": matrix_shapes(256, 6, 256),
          "GPT-2 small, 12 x 768": matrix_shapes(768, 12, 50257)}
P_mem, rank = 4096, 1
memory = {}
for name, shapes in models.items():
    n_params = sum(o * i for o, i in shapes)
    full = P_mem * n_params * 4                                 # float32
    lowrank = P_mem * sum((o + i) * rank for o, i in shapes) * 4
    memory[name] = (n_params, full, lowrank, table.table.nbytes)
    print(f"{name:28s} {n_params / 1e6:8.2f} M matrix params | P = {P_mem}: full-rank noise "
          f"{full / 2**30:9.1f} GiB, rank-1 factors {lowrank / 2**30:7.2f} GiB, npegg {table.table.nbytes / 2**20:.0f} MiB")

# %%
if plt:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    names = list(memory)
    w = 0.27
    for i, (lab, idx) in enumerate((("stored full-rank noise", 1), ("stored rank-1 factors", 2),
                                    ("npegg: table + keys", 3))):
        ax.bar(np.arange(len(names)) + (i - 1) * w, [memory[n][idx] for n in names], w, label=lab)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set(ylabel="bytes", title=f"Noise memory for one generation, P = {P_mem}")
    ax.legend(fontsize=8)
    book.save(fig, "04_memory.png")
gpt2 = memory["GPT-2 small, 12 x 768"]
assert gpt2[1] > 2**40 and gpt2[2] > 2**30                # terabytes of full-rank noise, gigabytes of factors
book.check("noise table MiB", table.table.nbytes / 2**20, 32, 0)

# %% [markdown]
# Full-rank noise is out of the question beyond toy sizes (terabytes for a GPT-2-sized stack),
# and even rank-1 factors for a whole generation run to gigabytes. The table is a constant
# 32 MiB. (For the tiny regression MLP, storing its factors would actually be cheaper than the
# table; the table's real point is not the bytes but that any member's noise can be rebuilt
# anywhere, in any order, on any backend — which is also what makes the parity tests possible.)
#
# ## 6. Building a model from atoms
#
# The atoms in `npegg/models/common.py` are `Parameter` (→ `get_noisy_standard`), `MM` and `TMM`
# (→ `do_mm`, `do_Tmm`), `Embedding` (→ `do_emb`); `Linear`, `LayerNorm` and `MLP` are built from
# them with three helpers: `merge_inits` (name the parts' inits), `merge_frozen` (add settings),
# `call_submodule` (run a part on its own sub-trees). A new model needs only `rand_init` and
# `_forward`. Here is a small bag-of-tokens classifier with a residual block, and one `EXCLUDED`
# leaf: a fixed output temperature that the model reads directly, without the noiser, and that ES
# must never change.

# %%
class ResidualBlock(Model):
    """x + W₂ relu(W₁ layer_norm(x)): D → 4D → D."""

    @classmethod
    def rand_init(cls, key, dim):
        k1, k2, k3 = K.split(key, 3)
        return merge_inits(norm=LayerNorm.rand_init(k1, dim),
                           up=Linear.rand_init(k2, dim, 4 * dim),
                           down=Linear.rand_init(k3, 4 * dim, dim))

    @classmethod
    def _forward(cls, cp, x):
        h = call_submodule(LayerNorm, "norm", cp, x)
        h = np.maximum(call_submodule(Linear, "up", cp, h), 0)
        return x + call_submodule(Linear, "down", cp, h)


class BagClassifier(Model):
    """Mean of token embeddings → residual block → linear head, divided by a fixed temperature."""

    @classmethod
    def rand_init(cls, key, vocab, dim, classes, temperature=2.0):
        k1, k2, k3 = K.split(key, 3)
        init = merge_inits(emb=Embedding.rand_init(k1, vocab, dim),
                           block=ResidualBlock.rand_init(k2, dim),
                           head=Linear.rand_init(k3, dim, classes),
                           temp=Parameter.rand_init(None, raw_value=np.float32(temperature)))
        init.es_map["temp"] = EXCLUDED                          # read directly, never perturbed or updated
        return init

    @classmethod
    def _forward(cls, cp, tokens):
        e = call_submodule(Embedding, "emb", cp, tokens)        # (P, …, T, D)
        h = call_submodule(ResidualBlock, "block", cp, e.mean(-2))
        return call_submodule(Linear, "head", cp, h) / cp.params["temp"]


bag = BagClassifier.rand_init(K.fold_in(K.key(2), 0), vocab=32, dim=8, classes=3)
for path, code in flatten(bag.es_map).items():
    print(f"  {path:18s} {str(flatten(bag.params)[path].shape):8s} {CODE[code]}")

# %% [markdown]
# One ES step on it with EggRoll: a population forward, a made-up fitness, an update. The
# `EXCLUDED` leaf must come out bit-identical, every other leaf must move.

# %%
bag_keys = simple_es_tree_key(bag.params, K.fold_in(K.key(2), 1), bag.scan_map)
fz, st = EggRoll.init_noiser(bag.params, sigma=0.1, lr=0.05, rank=1, noise=table)
P = 16
tokens = rng.integers(0, 32, (P, 5))                            # (P, T): one sentence per member
logits = BagClassifier.forward(EggRoll, fz, st, None, bag.params, bag_keys, (0, np.arange(P)), tokens)  # (P, 3)
f = EggRoll.convert_fitnesses(fz, st, logits[:, 0] - logits[:, 1])     # "prefer class 0 over class 1"
st, new = EggRoll.do_updates(fz, st, bag.params, bag_keys, f, (np.zeros(P, int), np.arange(P)), bag.es_map)
for path, p in flatten(bag.params).items():
    print(f"  {path:18s} changed: {not np.array_equal(p, flatten(new)[path])}")

# %% [markdown]
# ## 7. Writing your own noiser
#
# A noiser is any class with the methods of section 1, so a new ES variant is a subclass that
# overrides some of them. Example: **perturb and train only some leaves** — say, only a
# network's last layer, a "head-only" ES fine-tune. The noiser sees each leaf's *key*, which
# identifies the leaf, so we give it the keys of the leaves it may touch:
#
# - in the forward methods, any other leaf is computed as if `iterinfo` were `None`;
# - in `do_updates`, any other leaf is marked `EXCLUDED` in the `es_map` handed to EggRoll's
#   update, which then leaves it alone.

# %%
class MaskedEggRoll(EggRoll):
    """EggRoll restricted to the leaves whose keys are in ``active_keys``; all others stay fixed."""

    @classmethod
    def init_noiser(cls, params, sigma, lr, *args, active_keys=(), **kwargs):
        frozen, state = super().init_noiser(params, sigma, lr, *args, **kwargs)
        return {**frozen, "active": {np.asarray(k).tobytes() for k in active_keys}}, state

    @classmethod
    def _info(cls, frozen, key, iterinfo):
        return iterinfo if np.asarray(key).tobytes() in frozen["active"] else None

    @classmethod
    def do_mm(cls, frozen, state, param, key, iterinfo, x):
        return super().do_mm(frozen, state, param, key, cls._info(frozen, key, iterinfo), x)

    @classmethod
    def do_Tmm(cls, frozen, state, param, key, iterinfo, x):
        return super().do_Tmm(frozen, state, param, key, cls._info(frozen, key, iterinfo), x)

    @classmethod
    def do_emb(cls, frozen, state, param, key, iterinfo, tokens):
        return super().do_emb(frozen, state, param, key, cls._info(frozen, key, iterinfo), tokens)

    @classmethod
    def get_noisy_standard(cls, frozen, state, param, key, iterinfo):
        return super().get_noisy_standard(frozen, state, param, key, cls._info(frozen, key, iterinfo))

    @classmethod
    def do_updates(cls, frozen, state, params, keys, fitnesses, iterinfos, es_map):
        masked = tree_map(lambda k, code: code if np.asarray(k).tobytes() in frozen["active"] else EXCLUDED,
                          keys, es_map)
        return super().do_updates(frozen, state, params, keys, fitnesses, iterinfos, masked)


# %% [markdown]
# (`per_member` in `npegg.models.common` lets a layer add an unperturbed bias of shape (O,) or a
# perturbed one of shape (P, O) alike, so returning the plain result for inactive leaves just
# works.) Now the training loop, written out with nothing but the interface — this is what
# `npegg.es.ES` wraps (chapter 5 uses that). The task: fit $y=\sin 2x$ on $[-3,3]$ with an MLP
# 1 → 32 → 32 → 1 (SiLU), 512 members in groups of 32 per training point, Adam with learning rate
# 0.03, σ = 0.1 decayed linearly. Three noisers in the same loop: EggRoll on every leaf, MaskedEggRoll on the last
# layer only, and OpenES (full-rank noise, chapter 3).

# %%
def train(noiser, epochs, pop=512, group=32, seed=0, **noiser_kwargs):
    data = np.random.default_rng(0)
    train_x = data.uniform(-3, 3, 256).astype(np.float32)
    test_x = np.linspace(-3, 3, 200, dtype=np.float32)
    target = lambda v: np.sin(2 * v)
    fp, prm, smap, emap = MLP.rand_init(K.fold_in(K.key(seed), 0), in_dim=1, out_dim=1, hidden_dims=[32, 32],
                                        activation="silu")
    keys = simple_es_tree_key(prm, K.fold_in(K.key(seed), 1), smap)
    if callable(noiser_kwargs.get("active_keys")):
        noiser_kwargs["active_keys"] = noiser_kwargs["active_keys"](keys)
    fz, st = noiser.init_noiser(prm, 0.1, 0.03, group_size=group, rank=1, noise=table, solver="adam", **noiser_kwargs)
    start = flatten(prm)
    losses = []
    for ep in range(epochs):
        idx = np.repeat((np.arange(pop // group) + ep * (pop // group)) % train_x.size, group)   # (P,)
        xb = train_x[idx, None]                                                                   # (P, 1)
        info = (ep, np.arange(pop))
        out = MLP.forward(noiser, fz, st, fp, prm, keys, info, xb)[:, 0]                          # (P,)
        f = noiser.convert_fitnesses(fz, st, -(out - target(xb[:, 0])) ** 2)
        st, prm = noiser.do_updates(fz, st, prm, keys, f, (np.full(pop, ep), np.arange(pop)), emap)
        st = {**st, "sigma": 0.1 * (1 - (ep + 1) / epochs) + 1e-4}                                # σ: linear decay
        pred = MLP.forward(noiser, fz, st, fp, prm, keys, None, test_x[:, None])[:, 0]
        losses.append(float(np.mean((pred - target(test_x)) ** 2)))
    moved = [p for p, v in flatten(prm).items() if not np.array_equal(v, start[p])]
    return np.array(losses), moved


epochs = book.setting(40, 300)
curves, changed = {}, {}
for label, nz, kw in (("EggRoll, all leaves", EggRoll, {}),
                      ("MaskedEggRoll, last layer only", MaskedEggRoll,
                       {"active_keys": lambda keys: [keys["2"]["weight"], keys["2"]["bias"]]}),
                      ("OpenES, all leaves", OpenES, {})):
    curves[label], moved = train(nz, epochs, **kw)
    changed[label] = moved
    print(f"{label:32s} test MSE after {epochs} epochs: {curves[label][-1]:.4f}   leaves changed: {moved}")

# the claims of the paragraph below the figure
assert sorted(changed["MaskedEggRoll, last layer only"]) == ["2/bias", "2/weight"]
final = {k: c[-1] for k, c in curves.items()}
assert final["MaskedEggRoll, last layer only"] > max(final["EggRoll, all leaves"], final["OpenES, all leaves"])
book.check("log10 EggRoll / OpenES final test MSE", np.log10(final["EggRoll, all leaves"] / final["OpenES, all leaves"]),
           0, 0.5)                                            # "similar errors": within a factor of about 3

# %%
if plt:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, c in curves.items():
        ax.semilogy(c, label=label)
    ax.set(xlabel="epoch", ylabel="test MSE", title="sin 2x with three noisers, same loop")
    ax.legend(fontsize=8)
    book.save(fig, "04_custom_noiser.png")

# %% [markdown]
# The masked noiser changed only the two leaves it was given, so it fits the sine with the
# random features of the first two layers, and stalls above the others. EggRoll (rank 1) and
# OpenES (full rank) reach similar errors — chapter 3's conclusion, seen in training.
#
# ## Summary
#
# - Models compute, noisers perturb; every parameter access goes through `do_mm`, `do_Tmm`,
#   `do_emb` or `get_noisy_standard`, and `iterinfo` switches between the plain model and the
#   population.
# - `es_map` tells the update what each leaf is (`PARAM`, `MM_PARAM`, `EMB_PARAM`, `EXCLUDED`).
# - Keys are threefry, identical to JAX's; noise is a slice of a fixed table picked by
#   (leaf key, epoch, member // 2), so it is rebuilt on demand, identical whoever asks, and
#   never stored.
# - A new ES variant is a small subclass; the loop does not change.
#
# - The table's noise has mean 0 and covariance $I$ but kurtosis 2.85: the estimate's $O(\sigma^2)$
#   bias differs from the Gaussian one by a kurtosis term, computed exactly above. Slices of
#   different pairs can overlap (never coincide, for the first $2^{16}$ pairs).
#
# ## Exercises
#
# Solutions, checked by the test suite: `tutorials/solutions/04_noisers_and_models.py`.
#
# 1. **noise_reuse.** With $\rho = 3$, which of the epochs $0,\dots,8$ see the same noise? Write
#    $t_e$ as a function, and check your answer with `NoiseTable.lowrank`. What does $\rho = 0$ give?
# 2. **Rebuild a member by hand.** From `start_indices` and the table's entries alone, build
#    member $n$'s factors $A$ and $B$ for a $(5\times 7)$ leaf at rank 2 (the slice holds $B$
#    first, then $A$, row-major), and check them against `NoiseTable.lowrank` for several $n$.
# 3. **Birthdays.** With uniform random starts on $T = 2^{23}$ entries, from how many pairs on is
#    a shared start more likely than not? Check your formula by simulation, then check that
#    npegg's hash gives no shared start among the first $2^{16}$ pairs.
#
# **Next**, chapter 5: the seed notebook's regression, end to end, with `npegg.es.ES`.

# %%
book.finish(FIGURES)
