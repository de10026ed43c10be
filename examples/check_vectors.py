"""Check a folder of golden vectors by replaying them with nothing but NumPy.

    python examples/check_vectors.py [--feed recorded|own] [--max-mb N] DIR [DIR ...]

Copy this file into another backend's repository and replace the marked functions by calls into
that backend. It re-implements, from the format descriptions (``tests/reference/README.md``,
``docs/vectors.md``) and the model equations written there, the computations the vector files
record, and compares every recorded output. Before comparing, each file is read with
``npegg.oracle.vectorfile.read_vectors`` (``pip install npegg``: NumPy is its only dependency):
declared sizes are checked before anything is inflated (at most ``--max-mb`` MB per file, 256 by
default), nothing is unpickled, and every key, dtype, shape and token range is checked against
the schema ``npegg/oracle/vectors.schema.json``. A file that fails is reported in one line
naming the file, the key, what was expected and what was found.

Every differing stage is reported (``MISMATCH`` lines: key, first differing index, the values,
the bound and how many entries differ), not only the first. ``--feed recorded`` (the default)
feeds every stage the file's own inputs (the recorded fitness into the gradient, the recorded
params into each step), so each difference belongs to its stage; ``--feed own`` feeds each stage
this replay's own outputs (your backend's fitness into your gradient, your new params into the
next step), to see where a difference goes.

Exit status: 0 every replayed file matched; 1 a mismatch, or a damaged or invalid file; 2 bad
usage or no vector file found.

Replayed formats (by file name):

- ``egg_fwd_*``: the int8 EGG forward, base and every perturbed thread, bit for bit;
- ``qegg_update*``: the Q-EGGROLL vote Z and new params of every case, bit for bit;
- ``qegg_fitness*``: the fast sign fitness, bit for bit (the slow path's overflow quirks are not);
- ``float_eggroll*``: the float EggRoll MLP: forwards, fitness, gradient, optimizer step;
- ``float_lm_*``: npegg's float byte language model: forwards, fitness, gradient, optimizer step.

Other files (``int8_units``, ``qegg_thresholds``) are validated and listed as not replayed.
Float files are replayed in float64. A float entry passes when

    |got − want| ≤ atol + max(rtol·|want|, γₙ·S),   γₙ = n·u/(1 − n·u),  u = 2⁻²⁴

rtol and atol are the files' own (their README, ``meta/rtol``/``meta/atol``). S is the
operation's sum of absolute terms where this replay computes it (the same computation on
|inputs|: a matmul's Σ|w||x| through every layer, a gradient's Σ|f||A||B|/√N, a fitness's
(|R| + |group mean|)/std, an optimizer step's |θ| + lr·|update|) and n the number of float32
roundings along its longest sum: γₙ·S is the classic worst-case bound of a float32 computation of
it (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1; γ is ``npegg.conformance.tolerance.gamma``,
the conformance kit's, whose per-operation bounds have the same form). It matters where the result
is much smaller than its terms (an output of 0.08 summed from terms near 700; the fitness 0 of
equal raw scores), where a float32 result errs by ulps of its terms, not of itself; elsewhere
rtol·|want| is the larger, as before.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from npegg.conformance.tolerance import gamma        # γₙ = n·u/(1 − n·u), u = 2⁻²⁴, the conformance kit's
from npegg.oracle.vectorfile import MAX_BYTES, UnreadableVectorFile, VectorFileError, read_vectors


def sub(v, prefix):
    n = len(prefix) + 1
    return {k[n:]: a for k, a in v.items() if k.startswith(prefix + "/")}


class Checker:
    """Compares and counts; records every differing key (file, key, index, values, bound) and goes on.

    ``own``: the replay's own outputs feed the next stage (``feed``) instead of the recorded ones.
    """

    def __init__(self, name, own=False):
        self.name, self.own, self.count, self.diffs = name, own, 0, []

    def feed(self, got, v, key):
        """What the next stage reads: this replay's ``got`` under ``--feed own``, else the file's ``key``."""
        return np.asarray(got) if self.own else v[key]

    def exact(self, got, v, key):
        want = v[key]
        got = np.asarray(got)
        self.count += 1
        if got.shape != want.shape:
            return self._shape(key, got, want)
        if not np.array_equal(got.astype(np.int64), want.astype(np.int64)):
            self._fail(key, got, want, got.astype(np.int64) != want.astype(np.int64))

    def close(self, got, v, key, rtol, atol, terms=None):
        """|got − want| ≤ atol + max(rtol·|want|, γₙ·S) with ``terms`` = (S, n), or atol + rtol·|want|."""
        want = np.asarray(v[key], dtype=np.float64)
        got = np.asarray(got, dtype=np.float64)
        self.count += 1
        if got.shape != want.shape:
            return self._shape(key, got, want)
        bound = atol + rtol * np.abs(want)
        if terms is not None:
            S, n = terms
            bound = np.maximum(bound, atol + gamma(n) * S)
        bad = ~(np.abs(got - want) <= bound)
        if bad.any():
            self._fail(key, got, want, bad, bound)

    def _shape(self, key, got, want):
        self.diffs.append(f"{self.name}: {key}: shape mismatch: got {got.shape}, expected {want.shape}")

    def _fail(self, key, got, want, bad, bound=None):
        idx = tuple(int(i) for i in np.argwhere(bad)[0]) if np.ndim(bad) else ()
        extra = "" if bound is None else f" (bound {np.broadcast_to(bound, bad.shape)[idx]:.3g})"
        self.diffs.append(f"{self.name}: {key}{list(idx)}: got {got[idx].item()!r}, expected {want[idx].item()!r}{extra}; "
                          f"{int(np.sum(bad))} of {want.size} entries differ")


# -- int8: the EGG model (spec: docs/int8-spec.md) ----------------------------------------------------
def clip8(v):
    return np.clip(v, -127, 127)


def int_mm(W, x, noise, shift):
    """clip(⌊(W x + ⌊A (Bᵀ x) / 2^(4+shift)⌋) / (16 ⌊√in⌋)⌋); W (out, in) int8, x (in,) int64."""
    acc = W.astype(np.int64) @ x
    if noise is not None:
        A, B = (n.astype(np.int64) for n in noise)
        acc = acc + ((A @ (B.T @ x)) >> (4 + shift))
    return clip8(acc // (16 * int(np.sqrt(W.shape[1]))))


def int_standard(p, noise, shift):
    return p.astype(np.int64) if noise is None else clip8(p.astype(np.int64) + (noise.astype(np.int64) >> (4 + shift)))


def int_ln(x, w):
    m = max(int(np.abs(x).sum()), 1) // len(x)
    v = x * w
    return np.where(v == 0, -1, -2) if m == 0 else clip8(v // m)


EXP2 = np.floor(16 * 2.0 ** (np.arange(256) / 16)).astype(np.int64)


def int_ll(logits, target):
    s = int(EXP2[logits + 128].sum()) - 1
    s = min(s, (1 << 28) - 1)
    return int(logits[target] + 128) - int(np.trunc(16 * np.log2((s + 1) / 16)))


def egg_sequence(P, t_in, t_tgt, state0, noise, shift):
    """One thread's T steps → logits (T, V), states (T, L, H), ll (T,) as int64. (Replace by your backend.)"""
    def nz(leaf, layer=None):
        if noise is None:
            return None
        n = noise[leaf]
        return n if layer is None else (tuple(a[layer] for a in n) if isinstance(n, tuple) else n[layer])
    state = state0.astype(np.int64).copy()
    logits_t, states_t, ll_t = [], [], []
    for tok, tgt in zip(t_in, t_tgt):
        if tok == 0:
            state[:] = 0                                     # a document start resets before the step
        if noise is None:
            x = P["emb"][tok].astype(np.int64)
        else:
            A, B = (a.astype(np.int64) for a in noise["emb"])
            x = clip8(P["emb"][tok].astype(np.int64) + ((A[tok] @ B.T) >> (4 + shift)))
        for l in range(state.shape[0]):
            W = lambda n: P[f"blocks/{n}"][l]
            mm = lambda n, v: int_mm(W(n), v, nz(f"blocks/{n}", l), shift)
            std = lambda n: int_standard(W(n), nz(f"blocks/{n}", l), shift)
            a = int_ln(x, std("ln1/weight"))
            s = state[l]
            gate = clip8(mm("att/Wf", a) + mm("att/Uf", s) + std("att/bf")) + 127
            c = clip8(mm("att/Wh", a) + mm("att/Uh", (gate * s) >> 8) + std("att/bh"))
            state[l] = s + ((gate * (c - s)) >> 8)
            x = clip8(state[l] + x)
            x = clip8(mm("mlp/1/weight", mm("mlp/0/weight", int_ln(x, std("ln2/weight")))) + x)
        h = int_ln(x, int_standard(P["ln_out/weight"], nz("ln_out/weight"), shift))
        logits = int_mm(P["head"], h, nz("head"), shift)
        logits_t.append(logits)
        states_t.append(state.copy())
        ll_t.append(int_ll(logits, tgt))
    return np.array(logits_t), np.array(states_t), np.array(ll_t)


def check_egg_fwd(v, c):
    P = sub(v, "param")
    shift = int(v["meta/sigma_shift"])
    logits, states, ll = egg_sequence(P, v["base/tokens_in"], v["base/tokens_tgt"], v["base/state0"], None, shift)
    c.exact(logits, v, "base/logits")
    c.exact(states, v, "base/state")
    c.exact(ll, v, "base/ll")
    leaves = {k.split("/", 1)[1].rsplit("/", 1)[0] for k in v if k.startswith("noise/")}
    got = {"logits": [], "state": [], "ll": []}
    for i in range(len(v["pert/threads"])):
        noise = {leaf: (v[f"noise/{leaf}/A"][i], v[f"noise/{leaf}/B"][i]) if f"noise/{leaf}/A" in v
                 else v[f"noise/{leaf}/E"][i] for leaf in leaves}
        out = egg_sequence(P, v["pert/tokens_in"][i], v["pert/tokens_tgt"][i], v["pert/state0"][i], noise, shift)
        for k, o in zip(("logits", "state", "ll"), out):
            got[k].append(o)
    for k, o in got.items():
        c.exact(np.array(o), v, f"pert/{k}")


def check_qegg_update(v, c):
    for case in v["meta/cases"]:
        g = lambda k: v[f"{case}/{k}"]
        raw = g("raw_scores").astype(np.int64)
        f = np.sign(raw[0::2] - raw[1::2])                                   # (N,) fast fitness
        c.exact(f, v, f"{case}/fitness")
        f = c.feed(f, v, f"{case}/fitness").astype(np.int64)
        clt = bool(g("use_clt"))
        tau = int(g("update_threshold")) * int(np.sqrt(len(f))) * (256 if clt else 1)
        for leaf in sub(v, "param"):
            p = v[f"param/{leaf}"].astype(np.int64)
            if f"{case}/noise/{leaf}/A" in v:
                A, B = (g(f"noise/{leaf}/{n}").astype(np.int64) for n in "AB")
                A, B = (A, B) if clt else (np.sign(A), np.sign(B))
                Z = np.einsum("i,i...ar,i...br->...ab", f, A, B)
            else:
                E = g(f"noise/{leaf}/E").astype(np.int64)
                Z = np.einsum("i,i...->...", f, E if clt else np.sign(E))
            c.exact(Z, v, f"{case}/Z/{leaf}")
            Z = c.feed(Z, v, f"{case}/Z/{leaf}")
            new = np.where(16 * np.abs(Z) < tau, p, np.where(Z > 0, p + 1, p - 1))
            c.exact(clip8(new), v, f"{case}/new/{leaf}")


def check_qegg_fitness(v, c):
    raw = v["raw_scores"].astype(np.int64)
    c.exact(raw[0::2] - raw[1::2], v, "diff")
    c.exact(np.sign(raw[0::2] - raw[1::2]), v, "fast")


# -- float: EggRoll fitness, gradient and optimizers (HyperscaleES + optax) ------------------------------
def zscore(raw, g):
    """Per-group mean, global variance, +1e-5 (g = 0: one group) → (fitness, terms (S, n)).

    S = (|R| + |group mean|)/√(var + 1e-5), n = group size + 4: a float32 R − mean errs by ulps
    of R, so equal raw scores, whose fitness is 0 exactly, get a few ulps of R / √1e-5.
    """
    raw = np.asarray(raw, np.float64)
    groups = raw.reshape(-1, g or raw.size)
    mean = groups.mean(axis=1, keepdims=True)
    std = np.sqrt(raw.var() + 1e-5)
    return ((groups - mean) / std).ravel(), (((np.abs(groups) + np.abs(mean)) / std).ravel(), groups.shape[1] + 4)


def es_grad(f, noise, es_type, freeze=False):
    """G = −(1/√N) Σₙ fₙ Âₙ Bₙᵀ (MM/EMB) or −(1/√N) Σₙ fₙ Eₙ (PARAM), noise already scaled by s·σ(/√r)
    → (G, terms (Σ|fₙ||Aₙ||Bₙ| / √N, N·r + 3))."""
    n = len(f)
    if es_type == 0:
        if freeze:
            return np.zeros(noise["E"].shape[1:]), (np.zeros(noise["E"].shape[1:]), 0)
        E = noise["E"].astype(np.float64)
        return (-np.einsum("n,n...->...", f, E) / np.sqrt(n),
                (np.einsum("n,n...->...", np.abs(f), np.abs(E)) / np.sqrt(n), n + 3))
    A, B = noise["A"].astype(np.float64), noise["B"].astype(np.float64)
    return (-np.einsum("n,n...ar,n...br->...ab", f, A, B) / np.sqrt(n),
            (np.einsum("n,n...ar,n...br->...ab", np.abs(f), np.abs(A), np.abs(B)) / np.sqrt(n), n * A.shape[-1] + 3))


def optimizer_step(opt, lr, grads, params, state):
    """optax.sgd (no momentum), optax.adam or optax.adamw (b1 .9, b2 .999, eps 1e-8, weight decay 1e-4)
    → (new params, state, {leaf: terms (|θ| + lr·|update|, n)}). The bias corrections 1 − bᵏ are
    formed in float32, as optax does."""
    if opt == "sgd":
        return ({k: params[k] - lr * grads[k] for k in params}, state,
                {k: (np.abs(params[k]) + lr * np.abs(grads[k]), 3) for k in params})
    k = int(state["count"]) + 1
    c1, c2 = (float(np.float32(1) - np.float32(b) ** np.float32(k)) for b in (0.9, 0.999))
    wd = 1e-4 if opt == "adamw" else 0.0
    mu = {n: 0.9 * state["mu"][n] + 0.1 * grads[n] for n in params}
    nu = {n: 0.999 * state["nu"][n] + 0.001 * grads[n] ** 2 for n in params}
    upd = {n: (mu[n] / c1) / (np.sqrt(nu[n] / c2) + 1e-8) + wd * params[n] for n in params}
    return ({n: params[n] - lr * upd[n] for n in params}, {"count": k, "mu": mu, "nu": nu},
            {n: (np.abs(params[n]) + lr * (np.abs(upd[n]) + 2 * wd * np.abs(params[n])), 12) for n in params})


def mlp_forward(x, p, noise, layers, perturbed, freeze):
    """The MLP (relu between layers) for every member → (y, terms (S, n)): S is the same computation
    on |values|, the absolute sum of the terms each output is made of (relu is 1-Lipschitz, so it
    passes |x| on), n the roundings along the longest sum (each layer's inner size + rank + 3).
    (Replace by your backend.)"""
    xa, n = np.abs(x), 0
    for i, t in enumerate(layers):
        w, b = p[f"{t}/weight"], p[f"{t}/bias"]
        y, ya = x @ w.T, xa @ np.abs(w).T
        if perturbed:
            A, B = noise[f"{t}/weight"]["A"].astype(np.float64), noise[f"{t}/weight"]["B"]
            y = y + np.einsum("ni,nir,nor->no", x, B, A)
            ya = ya + np.einsum("ni,nir,nor->no", xa, np.abs(B), np.abs(A))
            if not freeze:
                b = b + noise[f"{t}/bias"]["E"]
        x, xa = y + b, ya + np.abs(b)
        n += w.shape[1] + 3 + (noise[f"{t}/weight"]["A"].shape[-1] if perturbed else 0)
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    return x, (xa, n)


def check_float_eggroll(v, c):
    rtol, atol, frtol, fatol = 2e-5, 2e-6, 1e-5, 1e-5                    # tests/reference/README.md
    leaves = sorted(sub(v, "param0"))
    layers = sorted({n.split("/")[0] for n in leaves}, key=int)
    for case in v["meta/cases"]:
        s = sub(v, str(case))
        steps = sorted({int(m.group(1)) for m in map(re.compile(r"step(\d+)/").match, s) if m})
        state = {"count": 0, "mu": {n: 0.0 for n in leaves}, "nu": {n: 0.0 for n in leaves}}
        own = None
        for k in steps:
            pre = f"{case}/step{k}/"
            p = own if own is not None else {n: v[pre + "param/" + n].astype(np.float64) for n in leaves}
            noise = {n: sub(v, pre + "noise/" + n) for n in leaves}
            freeze = bool(s["freeze_nonlora"])
            x = v[pre + "x"].astype(np.float64)                              # (N, in)
            for kind in ("y", "y_unperturbed"):
                y, scale = mlp_forward(x, p, noise, layers, kind == "y", freeze)
                c.close(y, v, pre + kind, rtol, atol, scale)
            fit, scale = zscore(v[pre + "raw_scores"], int(s["group"]))
            c.close(fit, v, pre + "fitness", frtol, fatol, scale)
            f = c.feed(fit, v, pre + "fitness").astype(np.float64)
            grads = {}
            for n in leaves:
                g, scale = es_grad(f, noise[n], int(v["es_map/" + n]), freeze)
                c.close(g, v, pre + "grad/" + n, rtol, atol, scale)
                grads[n] = c.feed(g, v, pre + "grad/" + n).astype(np.float64)
            if k > 0 and str(s["opt"]) != "sgd" and not c.own:
                prev = sub(v, f"{case}/step{k - 1}/adam")
                state = {"count": int(prev["count"]), "mu": sub(prev, "mu"), "nu": sub(prev, "nu")}
            new, state, scale = optimizer_step(str(s["opt"]), float(s["lr"]), grads, p, state)
            for n in leaves:
                c.close(new[n], v, pre + "new/" + n, rtol, atol, scale[n])
            own = new if c.own else None


# -- float: npegg's byte language model (docs/vectors.md) -------------------------------------------------
def sigmoid(x):
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x, w, b):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b


def lm_step(P, N, cell, tok, s, st):
    """One time step for all members, values and their absolute terms. (Replace by your backend.)

    P: {leaf: param}; N: {leaf: {"A", "B"} or {"E"}} scaled noise with a member axis, or None;
    tok (M,) ints; s (M, L, D) the state, st its terms → logits (M, V), their terms, the new state
    (M, L, D) and its terms, in float64. The terms T of a value bound its float32 error by γₙ·T
    (n roundings along the path, ``lm_roundings``): a sum adds its operands' T, a product
    |f|·T_g + |g|·T_f, a matmul |W|·T_x, σ, tanh and gelu scale T by their largest slope
    (¼, 1, 1.13) and add |result|, a layer norm (|x − μ| + 2·T_x)/σ·|w| + |b|; the state's T is
    carried from step to step as the state is.
    """
    M = len(tok)

    def par(leaf, l=None):                                         # (M, …): the member's own param, its terms
        p = P[leaf] if l is None else P[leaf][l]
        if N is None or "E" not in N[leaf]:
            p = np.broadcast_to(p, (M,) + p.shape)
            return p, np.abs(p)
        e = N[leaf]["E"] if l is None else N[leaf]["E"][:, l]
        return p + e, np.abs(p) + np.abs(e)

    def mm(leaf, x, l=None):                                       # x = (value (M, in), terms) → (M, out) and terms
        w = P[leaf] if l is None else P[leaf][l]
        (x, xt), = [x]
        y, yt = x @ w.T, xt @ np.abs(w).T
        if N is not None:
            A, B = (N[leaf][n] if l is None else N[leaf][n][:, l] for n in "AB")
            y = y + np.einsum("mi,mir,mor->mo", x, B, A)
            yt = yt + np.einsum("mi,mir,mor->mo", xt, np.abs(B), np.abs(A))
        return y, yt

    def add(*vs):
        return sum(v for v, _ in vs), sum(t for _, t in vs)

    def ln(x, w, b):
        (x, xt), (w, wt), (b, bt) = x, w, b
        mu, sd = x.mean(-1, keepdims=True), np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        return (x - mu) / sd * w + b, (np.abs(x - mu) + 2 * xt) / sd * wt + bt

    def act(fn, slope, x):
        y = fn(x[0])
        return y, slope * x[1] + np.abs(y)

    def mul(f, g):
        return f[0] * g[0], np.abs(f[0]) * g[1] + np.abs(g[0]) * f[1] + np.abs(f[0] * g[0])

    reset = (tok == 0)[:, None, None]                              # reset before a document start
    s, st = np.where(reset, 0.0, s), np.where(reset, 0.0, st)
    e = P["emb"][tok].astype(np.float64)
    x = (e, np.abs(e))
    if N is not None:
        A, B = N["emb"]["A"][np.arange(M), tok], N["emb"]["B"]      # (M, r), (M, D, r)
        x = add(x, (np.einsum("mr,mdr->md", A, B), np.einsum("mr,mdr->md", np.abs(A), np.abs(B))))
    new, new_t = np.empty_like(s), np.empty_like(s)
    for l in range(s.shape[1]):
        a = ln(x, par("blocks/ln1/weight", l), par("blocks/ln1/bias", l))
        h = (s[:, l], st[:, l])
        if cell == "egg":
            f = act(sigmoid, 0.25, add(mm("blocks/att/Wf", a, l), mm("blocks/att/Uf", h, l), par("blocks/att/bf", l)))
            c = act(np.tanh, 1.0, add(mm("blocks/att/Wh", a, l), mm("blocks/att/Uh", mul(f, h), l),
                                      par("blocks/att/bh", l)))
            h = add(h, mul(f, add(c, (-h[0], h[1]))))
        else:                                                      # minGRU
            z = act(sigmoid, 0.25, add(mm("blocks/att/Wz", a, l), par("blocks/att/bz", l)))
            h = add(mul((1 - z[0], z[1]), h), mul(z, add(mm("blocks/att/Wh", a, l), par("blocks/att/bh", l))))
        new[:, l], new_t[:, l] = h
        x = add(x, h)
        m = act(gelu, 1.13, add(mm("blocks/mlp/0/weight", ln(x, par("blocks/ln2/weight", l), par("blocks/ln2/bias", l)), l),
                                par("blocks/mlp/0/bias", l)))
        x = add(x, mm("blocks/mlp/1/weight", m, l), par("blocks/mlp/1/bias", l))
    logits, logits_t = mm("head", ln(x, par("ln_out/weight"), par("ln_out/bias")))
    return logits, logits_t, new, new_t


def lm_roundings(P, rank) -> int:
    """An upper bound of the float32 roundings along the longest path of one step (the n of γₙ): per
    layer two layer norms (2D + 4 each), four matmuls of D and two of the MLP's widths (each + r + 2),
    and the elementwise steps (about 40); then the last layer norm and the head."""
    L, _, D = P["blocks/ln1/weight"].shape + (P["blocks/ln1/weight"].shape[-1],)
    widths = P["blocks/mlp/0/weight"].shape[-1] + P["blocks/mlp/1/weight"].shape[-1]
    return L * (2 * (2 * D + 4) + 4 * (D + rank + 2) + widths + 2 * (rank + 2) + 40) + (2 * D + 4) + D + rank + 2


def log_softmax_at(logits, target):
    z = logits - logits.max(-1, keepdims=True)
    return np.take_along_axis(z, target[..., None], -1)[..., 0] - np.log(np.exp(z).sum(-1))



def check_float_lm(v, c):
    rtol, atol = float(v["meta/rtol"]), float(v["meta/atol"])
    cell, lr, g = str(v["meta/cell"]), float(v["meta/lr"]), int(v["meta/group_size"])
    leaves = sorted(sub(v, "param0"))
    state = {"count": 0, "mu": {n: 0.0 for n in leaves}, "nu": {n: 0.0 for n in leaves}}
    own = None
    for k in range(int(v["meta/steps"])):
        pre = f"step{k}/"
        P = own if own is not None else {n: v[pre + "param/" + n].astype(np.float64) for n in leaves}
        N = {n: sub(v, pre + "noise/" + n) for n in leaves}
        tin, tgt = v[pre + "tokens_in"].astype(np.int64), v[pre + "tokens_tgt"].astype(np.int64)
        n = lm_roundings(P, int(v["meta/rank"]))
        for kind, noise in (("plain", None), ("pert", N)):
            s = v[pre + "state0"].astype(np.float64)
            st = np.abs(s)
            logits, logits_t, states, states_t = [], [], [], []
            for t in range(tin.shape[1]):
                lg, lgt, s, st = lm_step(P, noise, cell, tin[:, t], s, st)
                logits.append(lg), logits_t.append(lgt), states.append(s), states_t.append(st)
            logits, logits_t = np.stack(logits, 1), np.stack(logits_t, 1)  # (M, T, V)
            states, states_t = np.stack(states, 1), np.stack(states_t, 1)  # (M, T, L, D)
            c.close(logits, v, pre + f"{kind}/logits", rtol, atol, (logits_t, n))
            c.close(states, v, pre + f"{kind}/state", rtol, atol, (states_t, n))
            c.close(states[:, -1], v, pre + f"{kind}/final_state", rtol, atol, (states_t[:, -1], n))
            ll = log_softmax_at(logits, tgt)                                # ll = z_t − log Σ exp z: errs as max T of z
            ll_t = np.abs(ll) + logits_t.max(-1) + np.take_along_axis(logits_t, tgt[..., None], -1)[..., 0]
            c.close(ll, v, pre + f"{kind}/ll", rtol, atol, (ll_t, n + logits.shape[-1] + 4))
            if kind == "pert":
                ll = c.feed(ll, v, pre + "pert/ll")
        raw = np.asarray(ll, np.float64).sum(1)
        c.close(raw, v, pre + "raw_scores", 1e-12, 0)                     # both sum the float32 ll in float64
        fit, scale = zscore(c.feed(raw, v, pre + "raw_scores"), g)
        c.close(fit, v, pre + "fitness", rtol, atol, scale)
        f = c.feed(fit, v, pre + "fitness").astype(np.float64)
        grads = {}
        for n in leaves:
            G, scale = es_grad(f, N[n], int(v["es_map/" + n]))
            c.close(G, v, pre + "grad/" + n, rtol, atol, scale)
            grads[n] = c.feed(G, v, pre + "grad/" + n).astype(np.float64)
        if k > 0 and not c.own:
            prev = sub(v, f"step{k - 1}/opt")
            state = {"count": int(prev["count"]), "mu": sub(prev, "mu"), "nu": sub(prev, "nu")}
        new, state, scale = optimizer_step(str(v["meta/optimizer"]), lr, grads, P, state)
        for n in leaves:
            c.close(new[n], v, pre + "new/" + n, rtol, atol, scale[n])
        own = new if c.own else None


CHECKS = {"egg_fwd": check_egg_fwd, "qegg_update": check_qegg_update, "qegg_fitness": check_qegg_fitness,
          "float_eggroll": check_float_eggroll, "float_lm": check_float_lm}


def main(argv) -> int:
    args, own, max_bytes = list(argv), False, MAX_BYTES
    try:
        while args and args[0].startswith("-"):
            flag = args.pop(0)
            if flag == "--feed" and args and args[0] in ("recorded", "own"):
                own = args.pop(0) == "own"
            elif flag == "--max-mb" and args and args[0].isdigit() and int(args[0]) > 0:
                max_bytes = int(args.pop(0)) << 20
            else:
                raise ValueError(flag)
        if not args or any(a.startswith("-") for a in args):
            raise ValueError("no folder")
    except ValueError:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    files = []
    for d in map(Path, args):
        if not d.is_dir():
            print(f"{d}: not a folder", file=sys.stderr)
            return 2
        files += sorted(d.glob("*.npz"))
    if not files:
        print(f"no .npz vector files in {', '.join(args)}", file=sys.stderr)
        return 2
    replayed, failed = 0, 0
    for path in files:
        try:                # damaged, too large when inflated, or not following the schema: one line
            vec = read_vectors(path, max_bytes=max_bytes)
        except UnreadableVectorFile as e:
            print(f"DAMAGED       {e}")
            failed += 1
            continue
        except VectorFileError as e:
            print(f"INVALID       {e}")
            failed += 1
            continue
        check = CHECKS.get(vec.kind)
        if check is None:
            print(f"not replayed  {path}  ({vec.kind}, valid)")
            continue
        c = Checker(path.name, own=own)
        try:
            check(vec.arrays, c)
        except Exception as e:  # noqa: BLE001 — a replay that cannot go on is reported, not a traceback
            c.diffs.append(f"{path.name}: the replay stopped: {type(e).__name__}: {e}")
        for line in c.diffs:
            print(f"MISMATCH      {line}")
        if c.diffs:
            print(f"FAILED        {path}  ({len(c.diffs)} of {c.count} arrays differ)")
            failed += 1
        else:
            print(f"ok            {path}  ({c.count} arrays)")
        replayed += 1
    if failed:
        return 1
    if not replayed:
        print("no file in a replayed format", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
