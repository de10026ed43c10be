"""Float tolerances derived from rounding-error bounds: how far two correct float32 implementations
of an operation may lie apart, element by element, for the case at hand.

The standard model of float arithmetic (Higham, *Accuracy and Stability of Numerical Algorithms*,
§2–3): every +, −, ×, ÷, √ is exact up to a factor (1 + δ), |δ| ≤ u = 2⁻²⁴ for float32, and a
value reached through k such operations has relative error at most γ_k = k·u/(1 − k·u). For a
sum of products in *any* order (BLAS blocks, pairwise sums, fused multiply-adds) that gives

    |fl(Σᵢ aᵢbᵢ) − Σᵢ aᵢbᵢ| ≤ γ_n · Σᵢ |aᵢ bᵢ|           (n = the number of terms)

which scales with the terms' magnitudes, not with the result: a sum that cancels to ~0 may
carry an error of the size of its largest terms, and a tolerance relative to |result| would
call that a failure. Each function below evaluates such a bound with the case's own numbers
(float64, absolute values), for one implementation against the exact result; two
implementations, each within it, lie within **twice** it of each other, which is the tolerance
(``tolerance(op, case)``). Inputs that are not float32 numbers (σ, a learning rate, β₂ = 0.999)
count as one more rounding, and their effect is propagated like any other (this is what makes
Adam's bias correction 1 − β₂ᵏ, whose condition number is k·β₂ᵏ/(1 − β₂ᵏ) ≈ 1000 at k = 1,
loose at its first steps). Whole steps propagate each stage's bound through the next to first
order (a derivative times the incoming error, plus the stage's own rounding).

``bytelm_forward`` is the one exception: its gated recurrence and layer norms have no simple
closed bound, so its tolerance is an *estimate*: four times npegg's own float32 error measured
against a float64 replay of the same equations, plus 8 ulps of the value.
"""
from __future__ import annotations

import numpy as np

U = 2.0 ** -24


def gamma(k) -> float:
    """γ_k = k·u/(1 − k·u), u = 2⁻²⁴: the relative error bound of k float32 roundings."""
    k = float(k)
    return k * U / (1 - k * U)


def _sign_scale(members, sigma, rank=1):
    return np.abs(sigma / np.sqrt(rank)) * np.ones(len(members))


def _abs(a):
    return np.abs(np.asarray(a, np.float64))


def bound_do_mm(c, transposed=False):
    """|Δy| ≤ γ_{I+R+5} · (|x||W|ᵀ + σ/√R · (|x||B|)|A|ᵀ); for do_Tmm W and the factors' roles swap."""
    x, w, a, b = _abs(c["x"]), _abs(c["W"]), _abs(c["A"]), _abs(c["B"])
    r, i = a.shape[-1], x.shape[-1]
    s = c["sigma"] / np.sqrt(r)
    base = x @ w if transposed else x @ w.T                              # (P, N, O)
    first, second = (a, b) if transposed else (b, a)
    low = s * np.matmul(np.matmul(x, first), second.transpose(0, 2, 1))
    return {"y": gamma(i + r + 5) * (base + low)}


def bound_do_emb(c):
    """|Δy| ≤ γ_{R+5} · (|E[t]| + σ/√R · |A[t]||B|ᵀ)."""
    e, a, b, t = _abs(c["E"]), _abs(c["A"]), _abs(c["B"]), np.asarray(c["tokens"])
    r = a.shape[-1]
    rows = a[np.arange(t.shape[0])[:, None], t]                            # (P, N, R)
    return {"y": gamma(r + 5) * (e[t] + c["sigma"] / np.sqrt(r) * np.matmul(rows, b.transpose(0, 2, 1)))}


def bound_noisy_standard(c):
    """|Δy| ≤ γ₃ · (|p| + σ|E|)."""
    return {"y": gamma(3) * (_abs(c["p"]) + c["sigma"] * _abs(c["E"]))}


def zscore_error(raw, group_size):
    """First-order bound on |Δf| for f = (R − m_g)/√(var R + 1e-5), computed in float32.

    m̂ (a group mean of g terms): |Δm| ≤ γ_{g+1}·mean|R|.   c = R − m̂: |Δc| ≤ |Δm| + u(|c| + |Δm|).
    v̂ = mean(ĉ²) over all P: |Δv| ≤ γ_{P+2}·v + mean(2|c||Δc| + |Δc|²).
    d = √(v + 1e-5): |Δd|/d ≤ |Δv|/(2(v + 1e-5)) + 3u (the constant, the add, the root).
    f = c/d: |Δf| ≤ |Δc|/d + |f|(|Δd|/d + u).
    """
    r = np.asarray(raw, np.float64)
    p = r.size
    g = p if group_size == 0 else int(group_size)
    groups = r.reshape(-1, g)
    m = groups.mean(axis=1, keepdims=True)
    dm = np.broadcast_to(gamma(g + 1) * np.abs(groups).mean(axis=1, keepdims=True), groups.shape).ravel()
    c = (groups - m).ravel()
    dc = dm + U * (np.abs(c) + dm)
    v = r.var()
    dv = gamma(p + 2) * v + np.mean(2 * np.abs(c) * dc + dc ** 2)
    d = np.sqrt(v + 1e-5)
    rel_d = dv / (2 * (v + 1e-5)) + 3 * U
    return dc / d + np.abs(c / d) * (rel_d + U)


def bound_fitness_zscore(c):
    return {"f": zscore_error(c["raw"], int(c["group_size"]))}


def bound_centered_ranks(c):
    """f = rank/(P − 1) − 0.5 from exact integer (or half-integer) ranks: |Δf| ≤ γ₃ · (|rank/(P−1)| + 0.5)."""
    p = np.asarray(c["raw"]).size
    return {"f": np.full(p, gamma(3) * 1.5)}


def bound_grad_lowrank(c, df=None):
    """|ΔG| ≤ γ_{NR+8} · (1/√N)·σ/√R·Σₙ |fₙ||Aₙ||Bₙ|ᵀ, plus (1/√N)·σ/√R·Σₙ |Δfₙ||Aₙ||Bₙ|ᵀ for fitness errors Δf."""
    a, b, f = _abs(c["A"]), _abs(c["B"]), _abs(c["fitness"])
    n, r = f.size, a.shape[-1]
    s = c["sigma"] / np.sqrt(r) / np.sqrt(n)
    g = gamma(n * r + 8) * s * np.einsum("n,nar,nbr->ab", f, a, b)
    if df is not None:
        g = g + s * np.einsum("n,nar,nbr->ab", df, a, b)
    return {"G": g}


def bound_grad_full(c, df=None):
    """|ΔG| ≤ γ_{N+7} · (1/√N)·σ·Σₙ |fₙ||Eₙ|, plus (1/√N)·σ·Σₙ |Δfₙ||Eₙ|."""
    e, f = _abs(c["E"]), _abs(c["fitness"])
    n = f.size
    s = c["sigma"] / np.sqrt(n)
    g = gamma(n + 7) * s * np.tensordot(f, e, axes=(0, 0))
    if df is not None:
        g = g + s * np.tensordot(df, e, axes=(0, 0))
    return {"G": g}


def optimizer_error(name, p0, grads, lrs, dgrads=None, momentum=0.0, nesterov=False, b1=0.9, b2=0.999, eps=1e-8,
                    wd=0.0):
    """First-order bound on |Δp| after each of K optimizer steps (K, D), the gradients known to ±dgrads.

    Each step replays the update in float64 beside an error vector per state (trace t; moments m, v),
    adding the rounding of every operation (γ_k of the terms it combines) to the propagated error:
    sgd:  t ← g + μt; d = g + μt (nesterov) or t; p ← p − lr·d.
    adam: m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; m̂ = m/c₁; v̂ = v/c₂, cᵢ = 1 − βᵢᵏ; q = m̂/(√v̂ + ε);
          p ← p − lr·(q + wd·p). The factors 1 − β and cᵢ carry the float32 rounding of β itself:
          relative errors u·(1 + β/(1 − β)) and u·(1 + (k + 2)·βᵏ/cᵢ) (β's rounding times the
          condition number k·βᵏ/cᵢ, and a pow accurate to 2 ulps).
    """
    p = np.asarray(p0, np.float64).copy()
    g_all = np.asarray(grads, np.float64)
    dg_all = np.zeros_like(g_all) if dgrads is None else np.asarray(dgrads, np.float64)
    ep = np.zeros_like(p)
    t, et = np.zeros_like(p), np.zeros_like(p)
    m, em, v, ev = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    out = []
    for k, (g, dg, lr) in enumerate(zip(g_all, dg_all, lrs), start=1):
        ag = np.abs(g)
        if name == "sgd":
            t_new = g + momentum * t
            et = dg + momentum * et + gamma(3) * (ag + momentum * np.abs(t))
            t = t_new
            if nesterov:
                d = g + momentum * t
                ed = dg + momentum * et + gamma(3) * (ag + momentum * np.abs(t))
            else:
                d, ed = t, et
            upd, eu = lr * d, lr * ed + gamma(2) * lr * np.abs(d)
        else:
            rb1, rb2 = U * (1 + b1 / (1 - b1)) if b1 < 1 else U, U * (1 + b2 / (1 - b2))
            m_new = b1 * m + (1 - b1) * g
            em = b1 * em + (1 - b1) * dg + (gamma(3) + rb1) * (b1 * np.abs(m) + (1 - b1) * ag)
            v_new = b2 * v + (1 - b2) * g * g
            ev = b2 * ev + (1 - b2) * 2 * ag * dg + (gamma(4) + rb2) * v_new
            m, v = m_new, v_new
            c1, c2 = 1 - b1 ** k, 1 - b2 ** k
            rc1 = U * (1 + (k + 2) * b1 ** k / c1)
            rc2 = U * (1 + (k + 2) * b2 ** k / c2)
            mh, vh = m / c1, v / c2
            emh = em / c1 + np.abs(mh) * (rc1 + U)
            evh = ev / c2 + vh * (rc2 + U)
            s = np.sqrt(vh)
            es = np.minimum(np.divide(evh, 2 * s, out=np.full_like(s, np.inf), where=s > 0), np.sqrt(evh)) + U * s
            den = s + eps
            eden = es + U * den
            q = mh / den
            eq = emh / den + np.abs(q) * eden / den + U * np.abs(q)
            upd = lr * (q + wd * p)
            eu = lr * (eq + wd * (ep + U * np.abs(p))) + gamma(3) * lr * (np.abs(q) + wd * np.abs(p))
        p = p - upd
        ep = ep + eu + U * np.abs(p)
        out.append(ep.copy())
    return np.stack(out)


def bound_optimizer(c, name):
    return {"params": optimizer_error(name, c["p0"], c["grads"], np.asarray(c["lrs"], np.float64),
                                      momentum=float(c.get("momentum", 0.0)), nesterov=bool(c.get("nesterov", False)),
                                      b1=float(c.get("b1", 0.9)), b2=float(c.get("b2", 0.999)),
                                      eps=float(c.get("eps", 1e-8)), wd=float(c.get("weight_decay", 0.0)))}


def bound_mlp_forward(c):
    """Layer by layer (relu is 1-Lipschitz): with W̃ = W + sσ/√R·A Bᵀ and b̃ = b + sσE per member,
    e_l = e_{l−1}·|W̃|ᵀ + γ_{I+R+6}·(|h||W|ᵀ + σ/√R·(|h||B|)|A|ᵀ + |b| + σ|E|), h the float64 activations."""
    members, sigma, rank = np.asarray(c["members"]), float(c["sigma"]), int(c["rank"])
    sgn = (1 - 2 * (members & 1)).astype(np.float64)                      # (P,)
    h = np.asarray(c["x"], np.float64)                                    # (P, I)
    e = np.zeros_like(h)
    n = len([k for k in c if k.startswith("param/") and k.endswith("/weight")])
    for t in range(n):
        w, bias = np.asarray(c[f"param/{t}/weight"], np.float64), np.asarray(c[f"param/{t}/bias"], np.float64)
        a, b = np.asarray(c[f"A/{t}/weight"], np.float64), np.asarray(c[f"B/{t}/weight"], np.float64)
        ev = np.asarray(c[f"E/{t}/bias"], np.float64)
        s = sigma / np.sqrt(rank)
        wp = w[None] + (sgn * s)[:, None, None] * np.matmul(a, b.transpose(0, 2, 1))   # (P, O, I)
        bp = bias[None] + (sgn * sigma)[:, None] * ev                                   # (P, O)
        mag = (np.abs(h) @ np.abs(w).T + s * np.einsum("pi,pir,por->po", np.abs(h), np.abs(b), np.abs(a))
               + np.abs(bias) + sigma * np.abs(ev))
        e = np.einsum("pi,poi->po", e, np.abs(wp)) + gamma(w.shape[1] + a.shape[-1] + 6) * mag
        z = np.einsum("pi,poi->po", h, wp) + bp
        h = np.maximum(z, 0) if t < n - 1 else z
    return {"y": 2 * e}


def bound_es_step(c, want):
    """Per generation: the z-score bound Δf, then G's bound with Δf propagated (grad_lowrank,
    grad_full), then the optimizer's bound with ΔG as the gradient error, all leaves."""
    k_steps = np.asarray(c["raw"]).shape[0]
    members = np.asarray(c["members"])
    leaves = [k[6:] for k in c if k.startswith("param/")]
    fit = np.asarray(want["fitness"], np.float64)
    df = np.stack([zscore_error(c["raw"][k], int(c["group_size"])) for k in range(k_steps)])
    out = {"fitness": 2 * df}
    lrs = np.asarray(c["lrs"], np.float64)
    for leaf in leaves:
        grads, dgrads = [], []
        for k in range(k_steps):
            sub = {"fitness": fit[k], "members": members, "sigma": float(c["sigma"])}
            if f"E/{leaf}" in c:
                sub["E"] = c[f"E/{leaf}"][k]
                e, f = _abs(sub["E"]), fit[k]
                g = -(f * (1 - 2 * (members & 1)) * c["sigma"]) @ e.reshape(len(f), -1) / np.sqrt(len(f))
                db = bound_grad_full(sub, df[k])["G"]
            else:
                sub["A"], sub["B"] = c[f"A/{leaf}"][k], c[f"B/{leaf}"][k]
                r = sub["A"].shape[-1]
                w = fit[k] * (1 - 2 * (members & 1)) * c["sigma"] / np.sqrt(r)
                g = -np.einsum("n,nar,nbr->ab", w, np.asarray(sub["A"], np.float64), np.asarray(sub["B"], np.float64))
                g = g / np.sqrt(len(w))
                db = bound_grad_lowrank(sub, df[k])["G"]
            grads.append(np.ravel(g))
            dgrads.append(np.ravel(db))
        p0 = np.ravel(c[f"param/{leaf}"])
        err = optimizer_error(str(c["optimizer"]), p0, np.stack(grads), lrs, np.stack(dgrads),
                              momentum=float(c["momentum"]), b1=float(c["b1"]), b2=float(c["b2"]), eps=float(c["eps"]),
                              wd=float(c["weight_decay"]) if str(c["optimizer"]) == "adamw" else 0.0)
        out[f"param/{leaf}"] = 2 * err.reshape((k_steps,) + np.shape(c[f"param/{leaf}"]))
    return out


def bound_bytelm(c, want):
    """The estimate of the module docstring: 4·|npegg's float32 − float64 replay| + 8 ulps of the value."""
    from .npegg_adapter import ADAPTER
    c64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype == np.float32 else v) for k, v in c.items()}
    exact = ADAPTER.run("bytelm_forward", c64)
    return {k: 4 * np.abs(np.asarray(want[k], np.float64) - exact[k]) + 8 * U * np.abs(exact[k]) for k in ("ll", "state")}


#: the one-implementation bound of each float operation, as the docs print it (tolerance = 2 × this)
BOUNDS = {
    "do_mm": "γ_{I+R+5} · (|x||W|ᵀ + σ/√R·(|x||B|)|A|ᵀ)",
    "do_Tmm": "γ_{I+R+5} · (|x||W| + σ/√R·(|x||A|)|B|ᵀ)",
    "do_emb": "γ_{R+5} · (|E[t]| + σ/√R·|A[t]||B|ᵀ)",
    "noisy_standard": "γ₃ · (|p| + σ|E|)",
    "fitness_zscore": "|Δc|/d + |f|·(|Δv|/(2(v+1e-5)) + 4u), |Δc| ≈ γ_{g+1}·mean|R| + u|c|, |Δv| ≈ γ_{P+2}·v + mean 2|c||Δc|",
    "fitness_centered_ranks": "γ₃ · 1.5",
    "grad_lowrank": "γ_{NR+8} · (σ/√(RN))·Σₙ|fₙ||Aₙ||Bₙ|ᵀ",
    "grad_full": "γ_{N+7} · (σ/√N)·Σₙ|fₙ||Eₙ|",
    "sgd": "per step: lr·|Δd| + γ₂·lr|d| + u|p| accumulated; Δt = μΔt + γ₃(|g| + μ|t|)",
    "adam": "first-order through m, v, m̂, v̂, √, ÷ (each + its γ); cᵢ = 1 − βᵢᵏ to u·(1 + (k+2)βᵢᵏ/cᵢ), 1 − β to u·(1 + β/(1−β))",
    "adamw": "adam's, plus lr·wd·(|Δp| + u|p|)",
    "mlp_forward": "e_l = e_{l−1}|W̃|ᵀ + γ_{I+R+6}·(|h||W|ᵀ + σ/√R(|h||B|)|A|ᵀ + |b| + σ|E|), relu 1-Lipschitz",
    "es_step": "zscore's Δf → G's bound plus (σ/√(RN))Σ|Δf||A||B|ᵀ → the optimizer's bound with ΔG",
    "bytelm_forward": "estimate: 2 × (2·|npegg float32 − float64 replay| + 4 ulps)",
}


def tolerance(op: str, case: dict, want: dict) -> dict:
    """{output name: per-element tolerance} for a float operation: twice the one-implementation bound
    (whole steps return it already doubled where errors propagate)."""
    single = {"do_mm": lambda: bound_do_mm(case), "do_Tmm": lambda: bound_do_mm(case, transposed=True),
              "do_emb": lambda: bound_do_emb(case), "noisy_standard": lambda: bound_noisy_standard(case),
              "fitness_zscore": lambda: bound_fitness_zscore(case),
              "fitness_centered_ranks": lambda: bound_centered_ranks(case),
              "grad_lowrank": lambda: bound_grad_lowrank(case), "grad_full": lambda: bound_grad_full(case),
              "sgd": lambda: bound_optimizer(case, "sgd"), "adam": lambda: bound_optimizer(case, "adam"),
              "adamw": lambda: bound_optimizer(case, "adamw")}
    if op in single:
        return {k: 2 * v for k, v in single[op]().items()}
    if op == "mlp_forward":
        return bound_mlp_forward(case)
    if op == "es_step":
        return bound_es_step(case, want)
    if op == "bytelm_forward":
        return bound_bytelm(case, want)
    raise KeyError(f"no float tolerance for operation {op!r}")
