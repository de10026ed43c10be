# %% [markdown]
# # Chapter 9 — npegg as an oracle
#
# npegg is slow on purpose: plain NumPy, one concept per module, every fast path beside a slow
# twin. The models people actually want to train at scale will run in JAX, PyTorch, C or on a
# GPU. How does such a backend know it computes the *same* model? For the int8 path of chapters
# 7 and 8 the answer can be absolute: every quantity is an integer, so a correct backend must
# reproduce npegg's numbers **bit for bit**, and npegg can hand it the numbers to check against.
#
# **What you will learn.**
#
# 1. Why integer code can be checked with `==` and float code only with a tolerance — measured,
#    not asserted.
# 2. How to export **golden vectors** with `npegg.oracle.int8_vectors`, and how the files are laid out
#    (the format of the reference's own vectors, so one checker reads both).
# 3. How to check "another implementation" against them: we write, inside this chapter, a
#    deliberately independent re-implementation of the whole int8 EGG forward pass (and of the
#    Q-EGGROLL update) from the specification alone, without importing any of npegg's model code,
#    and it passes.
# 4. That the check has teeth: one plausible bug — truncating instead of flooring a division —
#    is caught, and we see where.
# 5. The same check for the float path, where a tolerance is the right tool.
# 6. How a JAX, PyTorch or C backend would consume the files.
#
# **Run it**: `python tutorials/09_oracle.py` (or open it as a notebook). Figures go to
# `$NPEGG_TUTORIAL_OUT` (default `tutorials/figures/`); `NPEGG_TUTORIAL_SMALL=1` runs a small
# setting in a few seconds. The full setting took **8 s** on this machine (2 cores, heavily shared with other jobs).

# %%
import ast
import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np

import _book as book
from npegg.oracle.int8_vectors import export_int8_vectors

SMALL = book.choose_setting(None)  # None: NPEGG_TUTORIAL_SMALL decides; True = small (seconds), False = full
FIGURES = ["09_float_order.png", "09_bug_divergence.png"]
plt = book.pyplot()
rng = np.random.default_rng(9)

# %% [markdown]
# ## 1. Two tolerance policies
#
# Floating-point addition is not associative: $(a + b) + c$ and $a + (b + c)$ can differ in the
# last bit. BLAS, XLA, cuBLAS and a C loop all add in different orders (blocking, threads, fused
# multiply-adds), so two *correct* float implementations of the same formula disagree by a few
# units in the last place. Integer addition is associative, and exact as long as nothing
# overflows, so every correct order gives the same integer.
#
# Measure it: sum the same 4096 numbers in 200 random orders, in float32 and in int32.

# %%
n_orders = book.setting(50, 200)
x_float = rng.standard_normal(4096).astype(np.float32)
x_int = rng.integers(-127 * 127, 127 * 127, 4096).astype(np.int32)
sums_f, sums_i = [], []
for _ in range(n_orders):
    perm = rng.permutation(4096)
    acc_f, acc_i = np.float32(0), np.int32(0)
    for chunk in np.split(perm, 64):                       # 64 partial sums, added in turn
        acc_f = np.float32(acc_f + x_float[chunk].sum(dtype=np.float32))
        acc_i = np.int32(acc_i + x_int[chunk].sum(dtype=np.int32))
    sums_f.append(acc_f)
    sums_i.append(acc_i)
sums_f, sums_i = np.array(sums_f), np.array(sums_i)
exact = x_float.astype(np.float64).sum()
print(f"float32: {len(np.unique(sums_f))} distinct results over {n_orders} orders, "
      f"spread {sums_f.max() - sums_f.min():.2e} (relative {(sums_f.max() - sums_f.min()) / abs(exact):.1e})")
print(f"int32:   {len(np.unique(sums_i))} distinct result(s)")

if plt:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.hist((sums_f - exact) / abs(exact) * 1e7, bins=30)
    ax.set_xlabel("relative difference of the float32 sum from the float64 sum (× 10⁻⁷)")
    ax.set_ylabel("orders")
    ax.set_title(f"One sum, {n_orders} addition orders: {len(np.unique(sums_f))} float32 answers, 1 integer answer",
                 fontsize=9)
    book.save(fig, "09_float_order.png")

# %% [markdown]
# Hence two policies, stated in the reference vectors' README and used by npegg's tests:
#
# * **float path** (the EggRoll noiser of chapters 3–5): compare with
#   `np.allclose(got, want, rtol=2e-5, atol=2e-6)` (fitnesses `rtol=atol=1e-5`), and feed each
#   step the *recorded* parameters and scores rather than your own, so that last-bit differences
#   cannot compound over steps;
# * **int8 path**: `np.array_equal(got, want)` and the same dtype. No tolerance: a difference of
#   one unit anywhere is a bug (or an undocumented semantic difference, which is worse).
#
# ## 2. Exporting golden vectors
#
# `export_int8_vectors(folder)` runs npegg's own int8 EGG model and Q-EGGROLL update and writes
# what they computed: inputs, parameters, the exact noise every member used, and every output.

# %%
workdir = Path(tempfile.mkdtemp(prefix="npegg_vectors_"))
paths = export_int8_vectors(workdir)
for p in paths:
    with np.load(p, allow_pickle=False) as z:
        print(f"{p.name:28s} {p.stat().st_size / 1024:6.0f} KiB  {len(z.files):4d} arrays")

vec = dict(np.load(workdir / "egg_fwd_h32_l2_adv.npz", allow_pickle=False))
groups = {}
for k in vec:
    groups.setdefault(k.split("/")[0], []).append(k)
print({g: len(v) for g, v in groups.items()})
for k in ("meta/hidden", "meta/n_layer", "meta/T", "meta/sigma_shift", "meta/epoch", "meta/param_kind",
          "param/blocks/att/Wf", "param/head", "base/tokens_in", "base/logits", "base/state", "base/ll",
          "pert/threads", "pert/logits", "noise/blocks/att/Wf/A", "noise/blocks/att/Wf/B",
          "noise/blocks/ln1/weight/E", "noise/emb/start_clamped"):
    a = vec[k]
    print(f"  {k:30s} {str(a.dtype):7s} {str(a.shape):18s}" + (f" = {a}" if a.ndim == 0 else ""))

# %% [markdown]
# ### The format
#
# One `.npz` per file: a zip of `.npy` arrays whose names are slash-separated paths.
#
# * `meta/*`: scalars — sizes (`hidden`, `n_layer`, `vocab`, `T`, `rank`), settings (`sigma_shift`,
#   `noise_reuse`, `epoch`), and provenance (`noise_table`, seeds). A reader takes every size and
#   setting *from the file*, so a new file needs no new code.
# * `param/<leaf>` and `es_map/<leaf>`: the int8 parameters (stacked layers on axis 0 under
#   `blocks/`) and each leaf's type (0 vector, 1 matrix, 2 embedding).
# * `base/*`: one unperturbed sequence — `tokens_in`, `tokens_tgt` (the next bytes), `state0`, and
#   the expected `logits` (T, V), `state` (T, L, H) after every step, `ll` (T,), `loss_sum`,
#   `final_state`.
# * `pert/*`: the same for a population of `threads` (antithetic pairs, odd ids included), each
#   with its own tokens and initial state, perturbed at `epoch`.
# * `noise/<leaf>/*`: for every leaf and thread the noise it used — low-rank `A` (sign applied)
#   and `B`, or full-rank `E` (sign applied) — plus where it came from (`key`, `K0`, `start`,
#   `start_clamped`, `sign`). A backend **injects** `A`, `B`, `E` and needs no noise table, no
#   hash and no PRNG; deriving the start indices itself is an optional second check.
# * `qegg_update_*.npz`: per case `<c>/…`: raw scores, fitness, threshold, the even threads'
#   noise, the vote `Z/<leaf>` and the expected parameters `new/<leaf>`.
#
# The keys, dtypes and shapes are those of the reference's golden vectors (`shared/parity`),
# which were produced by the JAX reference itself, so a checker written for one reads the other.

# %% [markdown]
# ## 3. Another implementation, written from the specification
#
# Now play the role of a backend author. Below is a complete int8 EGG forward pass — embedding,
# layers of layer norm → gated recurrent cell → residual → layer norm → MLP → residual, output
# norm, head, integer log-likelihood, state reset on byte 0 — written from the specification,
# one member at a time, in NumPy **int64** (wider than the reference's int32, harmless since no
# value comes near either limit). It imports nothing from npegg, and where npegg chose a clever
# route it deliberately takes another one:
#
# * the matmul forms the perturbed product `A @ (B.T @ x)` directly, in int64 (npegg: batched
#   float32 BLAS with an exactness bound, chapter 7);
# * the layer norm divides directly (npegg: the same formula, vectorised over the population);
# * EXP2 and LOG2 use the reference's own **float64** formulas, LOG2 evaluated on demand with the
#   clamp at $2^{28}-1$ (npegg: exact integer roots and 464 thresholds).
#
# Every division goes through one function, `divide`, so that we can swap it in section 4.

# %%
def floor_divide(a, d):
    return a // d                                   # NumPy's // on integers rounds toward −∞


def clip(v):
    return np.clip(v, -127, 127)


def mm(W, x, noise=None, sigma=0, divide=floor_divide):
    """Scaled int8 matmul: clip(⌊(W x + ⌊A (Bᵀ x) / 2^(4+σ)⌋) / (16·⌊√in⌋)⌋). W (out, in), x (in,)."""
    acc = W.astype(np.int64) @ x
    if noise is not None:
        A, B = noise
        acc = acc + ((A.astype(np.int64) @ (B.astype(np.int64).T @ x)) >> (4 + sigma))
    return clip(divide(acc, 16 * int(np.sqrt(W.shape[1]))))


def emb(E, t, noise=None, sigma=0):
    if noise is None:
        return E[t].astype(np.int64)                 # no clip when unperturbed (docs/int8-spec.md §2.3)
    A, B = noise
    return clip(E[t].astype(np.int64) + ((A[t].astype(np.int64) @ B.astype(np.int64).T) >> (4 + sigma)))


def standard(p, noise=None, sigma=0):
    return p.astype(np.int64) if noise is None else clip(p.astype(np.int64) + (noise >> (4 + sigma)))


def layer_norm(x, w, divide=floor_divide):
    m = max(int(np.abs(x).sum()), 1) // len(x)       # floored mean |x|
    v = x * w
    if m == 0:                                       # the reference's table row 0
        return np.where(v == 0, -1, -2)
    return clip(divide(v, m))


EXP2 = np.floor(16 * 2.0 ** (np.arange(256) / 16)).astype(np.int64)


def log2_table(i):
    i = min(int(i), (1 << 28) - 1)                   # the reference's gather clamps
    return int(np.trunc(16 * np.log2((i + 1) / 16)))


def int_ll(logits, target):
    lp = logits + 128
    return int(lp[target]) - log2_table(EXP2[lp].sum() - 1)


def forward_sequence(P, tokens_in, tokens_tgt, state0, noise=None, sigma=0, divide=floor_divide):
    """One member's T steps. P: {leaf: array}; noise: {leaf: (A, B) or E} or None.

    Returns logits (T, V), states (T, L, H), ll (T,), as int64.
    """
    def nz(leaf, layer=None):
        if noise is None:
            return None
        n = noise[leaf]
        return n if layer is None else (tuple(a[layer] for a in n) if isinstance(n, tuple) else n[layer])

    L = state0.shape[0]
    state = state0.astype(np.int64).copy()
    logits_all, states_all, ll_all = [], [], []
    for t_in, t_tgt in zip(tokens_in, tokens_tgt):
        if t_in == 0:
            state[:] = 0                              # document start: reset before the step
        x = emb(P["emb"], t_in, nz("emb"), sigma)
        for l in range(L):
            g = lambda name: P[f"blocks/{name}"][l]
            ln = lambda name, v: layer_norm(v, standard(g(f"{name}/weight"), nz(f"blocks/{name}/weight", l), sigma), divide)
            m = lambda name, v: mm(g(name), v, nz(f"blocks/{name}", l), sigma, divide)
            a = ln("ln1", x)
            s = state[l]
            f = clip(m("att/Wf", a) + m("att/Uf", s) + standard(g("att/bf"), nz("blocks/att/bf", l), sigma))
            gate = f + 127
            gated = (gate * s) >> 8
            c = clip(m("att/Wh", a) + m("att/Uh", gated) + standard(g("att/bh"), nz("blocks/att/bh", l), sigma))
            s_new = s + ((gate * (c - s)) >> 8)
            state[l] = s_new
            x = clip(s_new + x)
            x = clip(m("mlp/1/weight", m("mlp/0/weight", ln("ln2", x))) + x)
        h = layer_norm(x, standard(P["ln_out/weight"], nz("ln_out/weight"), sigma), divide)
        logits = mm(P["head"], h, nz("head"), sigma, divide)
        logits_all.append(logits)
        states_all.append(state.copy())
        ll_all.append(int_ll(logits, t_tgt))
    return np.array(logits_all), np.array(states_all), np.array(ll_all)

# %% [markdown]
# The checker reads everything from the file: parameters, settings, and for each thread the
# recorded noise of each leaf (layer by layer for stacked leaves). It compares every output with
# `np.array_equal` after casting to the file's dtype, and reports the first mismatch it finds.

# %%
def load_vectors(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def thread_noise(v, i):
    """{leaf: (A, B) or E} of thread index i, from the noise/<leaf>/* records."""
    out = {}
    for leaf in {k[len("noise/"):].rsplit("/", 1)[0] for k in v if k.startswith("noise/")}:
        if f"noise/{leaf}/A" in v:
            out[leaf] = (v[f"noise/{leaf}/A"][i], v[f"noise/{leaf}/B"][i])
        else:
            out[leaf] = v[f"noise/{leaf}/E"][i].astype(np.int64)
    return out


def check_forward_file(path, divide=floor_divide, verbose=True):
    """Run the independent forward on base/ and every pert/ thread.

    Returns (all bit-exact?, logits − golden as int64 (sequences, T, V)); sequence 0 is base/.
    """
    v = load_vectors(path)
    P = {k[len("param/"):]: val for k, val in v.items() if k.startswith("param/")}
    sigma = int(v["meta/sigma_shift"])
    runs = [("base", None, v["base/tokens_in"], v["base/tokens_tgt"], v["base/state0"],
             v["base/logits"], v["base/state"], v["base/ll"])]
    for i, thread in enumerate(v["pert/threads"]):
        runs.append((f"thread {thread}", thread_noise(v, i), v["pert/tokens_in"][i], v["pert/tokens_tgt"][i],
                     v["pert/state0"][i], v["pert/logits"][i], v["pert/state"][i], v["pert/ll"][i]))
    diffs = []
    first = None
    for name, noise, t_in, t_tgt, s0, want_logits, want_state, want_ll in runs:
        logits, states, ll = forward_sequence(P, t_in, t_tgt, s0, noise, sigma, divide)
        same = (np.array_equal(logits.astype(np.int8), want_logits) and np.array_equal(states.astype(np.int8), want_state)
                and np.array_equal(ll.astype(np.int32), want_ll))
        diff = logits - want_logits.astype(np.int64)                                # (T, V) got − golden
        diffs.append(diff)
        if not same and first is None:
            t = int(np.argmax(np.any(diff != 0, axis=1) | np.any(states.astype(np.int8) != want_state, axis=(1, 2))))
            first = (name, t)
    ok = first is None
    if verbose:
        print(f"{Path(path).name}: {len(runs)} sequences × {len(v['base/ll'])} steps — "
              + ("all logits, states and ll bit-exact" if ok else f"MISMATCH, first at {first[0]}, step {first[1]}"))
    return ok, np.array(diffs)


for p in paths:
    if p.name.startswith("egg_fwd_"):
        ok, _ = check_forward_file(p)
        assert ok

# %% [markdown]
# Both forward files pass: the clamped noise slices, the odd (negatively signed) threads, the
# adversarial parameters with ±127 and zero rows, the document resets — all bit-exact.
#
# The same independent code can be held against the **reference's** vectors, produced by the JAX
# implementation of nano-egg. They are not part of npegg (a fresh clone does not have them), so
# this cell runs only when the folder `../shared/parity` (or `$NPEGG_PARITY_DIR`) exists.

# %%
import os

parity_dir = Path(os.environ.get("NPEGG_PARITY_DIR", Path(book.__file__).resolve().parents[2] / "shared" / "parity"))
if parity_dir.is_dir():
    for name in book.setting(["egg_fwd_h16_l1_adv.npz"], ["egg_fwd_h16_l1_adv.npz", "egg_fwd_h32_l2_adv.npz",
                                                          "egg_fwd_h64_l1_init.npz"]):
        if (parity_dir / name).exists():
            assert check_forward_file(parity_dir / name)[0]
else:
    print(f"no reference vectors at {parity_dir}; skipped")

# %% [markdown]
# ### The update, too
#
# A backend that trains must also reproduce the Q-EGGROLL step of chapter 8. Again from the
# specification ([docs/int8-spec.md §8](../docs/int8-spec.md)): fitness $f_i = \mathrm{sign}(R_{2i} - R_{2i+1})$, the vote over the
# even threads' recorded noise, the threshold $\tau = \mathrm{thr}\cdot\lfloor\sqrt N\rfloor\cdot(256 \text{ or } 1)$,
# and the ±1 step with saturation. Stacked leaves are voted layer by layer.

# %%
def q_update(v, case):
    """{leaf: new int8 params} of one qegg_update case, from the recorded noise."""
    c = lambda k: v[f"{case}/{k}"]
    raw = c("raw_scores").astype(np.int64)
    f = np.sign(raw[0::2] - raw[1::2])                                    # (N,)
    n, clt, thr = len(f), bool(c("use_clt")), int(c("update_threshold"))
    tau = thr * int(np.sqrt(n)) * (256 if clt else 1)
    assert np.array_equal(f.astype(np.int8), c("fitness"))
    new = {}
    for leaf in [k[len("param/"):] for k in v if k.startswith("param/")]:
        p = v[f"param/{leaf}"].astype(np.int64)
        if f"{case}/noise/{leaf}/A" in v:
            A, B = c(f"noise/{leaf}/A").astype(np.int64), c(f"noise/{leaf}/B").astype(np.int64)
            if not clt:
                A, B = np.sign(A), np.sign(B)
            Z = np.einsum("i,i...ar,i...br->...ab", f, A, B)              # Σᵢ fᵢ Aᵢ Bᵢᵀ, per layer
        else:
            E = c(f"noise/{leaf}/E").astype(np.int64)
            Z = np.einsum("i,i...->...", f, E if clt else np.sign(E))
        assert np.array_equal(Z.astype(np.int32), c(f"Z/{leaf}")), (case, leaf)
        moved = np.where(Z > 0, p + 1, p - 1)
        new[leaf] = clip(np.where(16 * np.abs(Z) < tau, p, moved)).astype(np.int8)
    return new


v_upd = load_vectors(workdir / "qegg_update_npegg.npz")
for case in v_upd["meta/cases"]:
    new = q_update(v_upd, case)
    ok = all(np.array_equal(new[leaf], v_upd[f"{case}/new/{leaf}"]) for leaf in new)
    n_moved = sum(int(np.sum(new[leaf] != v_upd[f"param/{leaf}"])) for leaf in new)
    print(f"update case {case}: pop {int(v_upd[f'{case}/pop']):3d}, use_clt {bool(v_upd[f'{case}/use_clt'])!s:5}, "
          f"threshold {int(v_upd[f'{case}/update_threshold']):2d}: {n_moved:6d} entries moved — "
          + ("Z and new params bit-exact" if ok else "MISMATCH"))
    assert ok

# %% [markdown]
# ## 4. A plausible bug, caught
#
# The commonest porting mistake in this model is the one chapter 7 warned about: C, CUDA and
# PyTorch's `torch.div(..., rounding_mode="trunc")` divide integers by **truncation**, the
# reference by **floor**. Swap one function — the matmul's and the layer norm's division — and
# run the same checker.

# %%
def trunc_divide(a, d):
    return np.trunc(a / d).astype(np.int64)           # C-style: rounds toward zero


results = {}
for p in paths:
    if p.name.startswith("egg_fwd_"):
        ok, diff = check_forward_file(p, divide=trunc_divide)
        results[p.name] = diff
        assert not ok
        print(f"   wrong logits: {int(np.sum(diff != 0)):,} of {diff.size:,}; at step 0 off by up to "
              f"{int(np.abs(diff[:, 0]).max())} units, later up to {int(np.abs(diff).max())}")

# %% [markdown]
# Caught at once, at the very first step of the very first sequence. A single truncating
# division is off by at most one unit, and only on negative accumulators the divisor does not
# divide. But one step of the model chains more than a dozen divisions — every matmul, every
# layer norm, the head — each feeding the next, and the layer norm *amplifies* (it divides by the
# mean |x|, which can be small). So already at step 0 most logits are wrong, by a few units with
# nano-egg's initial weights and by up to the whole int8 range with the adversarial ones; the
# recurrent state then carries the error into every later step. No tolerance would have rescued
# this port, and none was needed to expose it: equality is the whole test.

# %%
if plt:
    name = "egg_fwd_h16_l1_init.npz"
    diff = results[name]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
    im = ax0.imshow(np.sum(diff != 0, axis=2), aspect="auto", cmap="magma", interpolation="nearest", vmin=0, vmax=256)
    ax0.set_xlabel("time step")
    ax0.set_ylabel("sequence (0 = base, then threads)")
    ax0.set_title("wrong logits (of 256) per sequence and step", fontsize=9)
    ax0.grid(False)
    fig.colorbar(im, ax=ax0)
    d0 = diff[:, 0].ravel()
    values, counts = np.unique(d0, return_counts=True)
    ax1.bar(values, counts)
    ax1.set_yscale("log")
    ax1.set_xlabel("logit − golden at step 0 (units of 1/16)")
    ax1.set_ylabel("logits")
    ax1.set_title(f"step 0, all {diff.shape[0]} sequences: {np.mean(d0 != 0):.0%} of logits off", fontsize=9)
    fig.suptitle(f"{name}: a truncating division against the golden vectors", fontsize=10)
    book.save(fig, "09_bug_divergence.png")

# %% [markdown]
# ## 5. The float path: the same check, with a tolerance
#
# npegg exports float vectors too (`npegg.oracle.float_vectors.export_float_vectors`, the format of the
# reference's `float_eggroll.npz`): a small MLP (3 → 8 → 8 → 2, ReLU) under EggRoll, for several
# settings (rank, group size, SGD or Adam), three steps each, with the scaled noise $\hat A$, $B$,
# $E$ every member used, the outputs, the fitnesses, the gradient handed to the optimizer and the
# new parameters. An independent float implementation, again from the specification ([docs/int8-spec.md §11](../docs/int8-spec.md); $P$ members, chapter 1's notation):
#
# $$ y_n = \mathrm{MLP}\big(x_n;\; W_\ell + \hat A_{n\ell} B_{n\ell}^\top,\; b_\ell + E_{n\ell}\big), \qquad
#    G = -\sqrt{P}\,\frac{1}{P} \sum_n f_n\, \hat A_n B_n^\top, \qquad \theta \leftarrow \theta - \mathrm{lr}\cdot G \;\;(\text{SGD}), $$
#
# written in float64, which no float32 implementation would match bit for bit — and need not.
# Following the policy, each step starts from the *recorded* parameters and fitnesses.

# %%
from npegg.oracle.float_vectors import export_float_vectors

fv = load_vectors(export_float_vectors(workdir / "float_eggroll_npegg.npz"))


def mlp_forward(params, x, noise):
    """Perturbed MLP in float64: h ← h (W + Â Bᵀ)ᵀ + b + E per member, ReLU between layers."""
    h = x.astype(np.float64)                                               # (N, in)
    n_layers = len([k for k in params if k.endswith("/weight")])
    for t in range(n_layers):
        W, b = params[f"{t}/weight"].astype(np.float64), params[f"{t}/bias"].astype(np.float64)
        A, B = (noise[f"{t}/weight/{k}"].astype(np.float64) for k in "AB")  # (N, out, r), (N, in, r)
        h = h @ W.T + np.einsum("ni,nir,nor->no", h, B, A) + b + noise[f"{t}/bias/E"]
        if t < n_layers - 1:
            h = np.maximum(h, 0)
    return h


worst = {"y": 0.0, "grad": 0.0, "new": 0.0}
n_checked = 0
for case in fv["meta/cases"]:
    if str(fv[f"{case}/opt"]) != "sgd" or bool(fv[f"{case}/freeze_nonlora"]):
        continue                                                            # SGD cases keep this short
    lr = float(fv[f"{case}/lr"])
    for k in range(int(fv[f"{case}/steps"])):
        pre = f"{case}/step{k}/"
        params = {key[len(pre + "param/"):]: val for key, val in fv.items() if key.startswith(pre + "param/")}
        noise = {key[len(pre + "noise/"):]: val for key, val in fv.items() if key.startswith(pre + "noise/")}
        y = mlp_forward(params, fv[pre + "x"], noise)
        f = fv[pre + "fitness"].astype(np.float64)                         # recorded, not recomputed
        n = len(f)
        for leaf, p in params.items():
            if leaf.endswith("/weight"):
                A, B = noise[f"{leaf}/A"].astype(np.float64), noise[f"{leaf}/B"].astype(np.float64)
                G = -np.sqrt(n) / n * np.einsum("n,nor,nir->oi", f, A, B)
            else:
                G = -np.sqrt(n) / n * np.einsum("n,no->o", f, noise[f"{leaf}/E"].astype(np.float64))
            new = p - lr * G
            for what, got, want in (("grad", G, fv[pre + f"grad/{leaf}"]), ("new", new, fv[pre + f"new/{leaf}"])):
                assert np.allclose(got, want, rtol=2e-5, atol=2e-6), (case, k, leaf, what)
                worst[what] = max(worst[what], float(np.max(np.abs(got - want) / (2e-6 + 2e-5 * np.abs(want)))))
        assert np.allclose(y, fv[pre + "y"], rtol=2e-5, atol=2e-6), (case, k)
        worst["y"] = max(worst["y"], float(np.max(np.abs(y - fv[pre + "y"]) / (2e-6 + 2e-5 * np.abs(fv[pre + "y"])))))
        n_checked += 1
print(f"float MLP: {n_checked} steps of the SGD cases pass rtol=2e-5, atol=2e-6; the largest error used "
      f"{max(worst.values()):.0%} of the tolerance (y {worst['y']:.0%}, grad {worst['grad']:.0%}, new {worst['new']:.0%})")
print("bit-exact against the float32 vectors?", np.array_equal(y.astype(np.float32), fv[pre + "y"]),
      "— a float64 implementation is not, and does not have to be")

# %% [markdown]
# ## 6. Consuming the vectors from another backend
#
# **JAX or PyTorch.** Load with `np.load(path, allow_pickle=False)`, convert each array
# (`jnp.asarray`, `torch.from_numpy`), run your forward with the recorded `A`, `B`, `E` injected
# where your noiser would have generated noise, and compare with `np.array_equal` after
# converting back. Mind the usual traps: JAX without x64 computes in int32 (fine here, [docs/int8-spec.md §2.2](../docs/int8-spec.md)
# gives the bound); PyTorch's `//` on integer tensors floors, but `torch.div(..., rounding_mode="trunc")`
# and C-style kernels truncate; `>>` must be an *arithmetic* shift; an int8 cast wraps, a clip
# saturates. A short pytest that globs the folder and dispatches on the file name (`egg_fwd_*`,
# `qegg_update*`) picks up new files without new code — npegg's own `tests/test_int8_parity.py`
# is written that way and runs on both the reference's files and npegg's exports.
#
# **C, C++, CUDA.** A `.npz` is an ordinary zip archive of `.npy` files, and a `.npy` file is a
# short header followed by the raw little-endian, C-order array. A C harness can unzip the
# folder (`unzip egg_fwd_h16_l1_init.npz`) and read each array with a dozen lines: check the
# magic `\x93NUMPY`, read the header length, parse `descr` and `shape` from the header, then
# `fread` the data. To show there is nothing more to it, here is that reader in plain Python,
# without `np.load`. The header is a Python dict literal; parse it with `ast.literal_eval`, which
# accepts literals only — never with `eval`, which would run whatever code a crafted file put
# there (even with `__builtins__` removed, `eval` can be escaped):

# %%
def read_npy_raw(buf: bytes):
    """(dtype string, shape, raw bytes) of a .npy file, parsed by hand (format version 1 or 2)."""
    assert buf[:6] == b"\x93NUMPY"
    major = buf[6]
    hlen = int.from_bytes(buf[8:10], "little") if major == 1 else int.from_bytes(buf[8:12], "little")
    start = (10 if major == 1 else 12) + hlen
    header = buf[start - hlen:start].decode("latin1")
    fields = ast.literal_eval(header)                # a Python dict literal, e.g. {'descr': '<i1', …}
    assert not fields["fortran_order"]
    return fields["descr"], tuple(fields["shape"]), buf[start:]


with zipfile.ZipFile(workdir / "egg_fwd_h16_l1_init.npz") as zf:
    descr, shape, data = read_npy_raw(zf.read("base/logits.npy"))
print("base/logits.npy:", descr, shape, f"{len(data)} bytes of data")
ref = np.load(workdir / "egg_fwd_h16_l1_init.npz")["base/logits"]
print("hand-parsed == np.load:", np.array_equal(np.frombuffer(data, dtype=descr).reshape(shape), ref))
assert np.array_equal(np.frombuffer(data, dtype=descr).reshape(shape), ref)
try:                                                  # a header that is code, not a literal, is refused
    ast.literal_eval("{'descr': __import__('os').getcwd()}")
    raise AssertionError("literal_eval ran code")
except ValueError as err:
    print("a header with a function call is refused:", type(err).__name__)

manifest = {k: {"dtype": str(a.dtype), "shape": list(a.shape)} for k, a in list(vec.items())[:3]}
print("a C harness might also want a JSON manifest like:", json.dumps(manifest)[:160], "…")

# %% [markdown]
# ## Summary
#
# - Integer arithmetic is associative, so the int8 path is checked with `np.array_equal`; float
#   code differs in the last bits between correct implementations and is checked with
#   `rtol=2e-5, atol=2e-6`, feeding recorded inputs at each step.
# - `npegg.oracle.int8_vectors.export_int8_vectors` writes golden vectors in the reference's format:
#   parameters, inputs, the noise each member used (so no noise table is needed), and every output
#   of the forward pass and of the Q-EGGROLL update.
# - An independent implementation written from the spec passed every file bit for bit — npegg's
#   exports and, where available, the JAX reference's own vectors — and one truncating division
#   made it fail at once.
# - `npegg.oracle.float_vectors.export_float_vectors` does the same for the float EggRoll path; an
#   independent float64 implementation passes it within the stated tolerance, not bit for bit.
#
# ## Exercises
#
# Solutions, checked by the test suite: `tutorials/solutions/09_oracle.py`.
#
# 1. **Write a `.npy` file by hand.** Using only `struct`-level byte handling (no `np.save`), write
#    an int8 array of shape (3, 5) as a version-1 `.npy` file — magic, version, header length,
#    a header padded with spaces to a multiple of 64 bytes and ending in a newline, then the data —
#    and check that `np.load` reads it back exactly.
# 2. **Which tolerance?** Compute a float32 dot product of length 4096 in two summation orders
#    (forward and pairwise). How far apart are they, relative to the result's size, and is that
#    within the float path's `rtol=2e-5`? Is the int8 dot product of the same length order-free?
# 3. **A second bug.** Replace the floor in the integer matmul's division by *round to nearest*
#    in a copy of `intmm.do_mm`, and find the fraction of entries of a random (64, 64) layer output
#    that change. Would the golden vectors catch it?
#
# That completes the single-machine story: ES from scratch (1–2), low-rank perturbations and
# EGGROLL from scratch (3), the library's interfaces (4–5), a byte-level language model (6),
# integers only (7), training in int8 (8), and now the guarantee that lets a faster backend
# inherit all of it.
#
# **Next**, [chapter 10](10_es_across_machines.py): the same training spread over processes and
# machines — what crosses the wire (only scores), and why the bits do not depend on the number of
# workers.

# %%
book.finish(FIGURES)
