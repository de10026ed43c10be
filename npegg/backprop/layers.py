"""Forward and backward of ByteLM's atoms, written by hand: layer norm, linear, GELU, the head's loss.

Every ``*_fwd`` returns its output and a cache; the matching ``*_bwd`` takes the gradient of the
loss with respect to that output (same shape) and the cache, and returns the gradients with
respect to its inputs and parameters. Rows are any leading axes (B, T, …); parameters have no
population axis (backprop trains one model). The formulas are the chain rule written out:

    linear      y = x Wᵀ + b             dx = dy W,  dW = Σ_rows dyᵀ x,  db = Σ_rows dy
    layer norm  x̂ = (x − μ)·r, r = 1/√(var + ε),  y = x̂ ⊙ w + b
                dx = r · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)),  dx̂ = dy ⊙ w
    GELU        gelu(x) = ½x(1 + tanh u),  u = c(x + 0.044715x³),  c = √(2/π)
                gelu'(x) = ½(1 + tanh u) + ½x(1 − tanh²u) · c(1 + 3·0.044715x²)
    loss        ℓ = −(1/N) Σₙ log softmax(zₙ)[yₙ],   dz = (softmax(z) − onehot(y)) / N

The forward passes compute the same functions as ``npegg.models.common`` (``layer_norm``,
``gelu``) and ``npegg.models.lm.log_softmax_at``; the tests check both the values against those
and every gradient against central finite differences.
"""
from __future__ import annotations

import numpy as np

GELU_C = float(np.sqrt(2.0 / np.pi))
GELU_K = 0.044715
LN_EPS = 1e-5


def rows(a: np.ndarray) -> np.ndarray:
    """(…, K) → (N, K): all leading axes as one row axis."""
    return a.reshape(-1, a.shape[-1])


def linear_fwd(x, w, b=None):
    """y = x Wᵀ + b: x (…, I), W (O, I), b (O,) → y (…, O); the cache is x."""
    y = x @ w.T
    if b is not None:
        y += b
    return y, x


def linear_bwd(dy, x, w):
    """(dx (…, I), dW (O, I), db (O,)) for y = x Wᵀ + b."""
    return dy @ w, rows(dy).T @ rows(x), rows(dy).sum(axis=0)


def layer_norm_fwd(x, w, b, eps=LN_EPS):
    """y = (x − μ)/√(var + ε) ⊙ w + b over the last axis; cache (x̂, r, w)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    r = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)       # (…, 1)
    xhat = xc * r                                                          # (…, D)
    return xhat * w + b, (xhat, r, w)


def layer_norm_bwd(dy, cache):
    """(dx, dw, db) for ``layer_norm_fwd``: dx̂ = dy ⊙ w, dx = r · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)),
    dw = Σ_rows dy ⊙ x̂, db = Σ_rows dy (means over the last axis). dy (…, D); dw, db (D,)."""
    xhat, r, w = cache
    dxhat = dy * w                                                         # (…, D)
    dx = r * (dxhat - dxhat.mean(axis=-1, keepdims=True)
              - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, rows(dy * xhat).sum(axis=0), rows(dy).sum(axis=0)


def gelu_fwd(x):
    """gelu(x) with the tanh approximation; cache (x, tanh u)."""
    th = np.tanh(GELU_C * (x + GELU_K * x * x * x))
    return 0.5 * x * (1.0 + th), (x, th)


def gelu_bwd(dy, cache):
    """dx = dy · gelu'(x), gelu'(x) = ½(1 + tanh u) + ½x(1 − tanh²u) · c(1 + 3·0.044715x²),
    u = c(x + 0.044715x³), c = √(2/π); dy and dx shaped like x."""
    x, th = cache
    return dy * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * GELU_C * (1.0 + 3.0 * GELU_K * x * x))


def sigmoid(x):
    """σ(x) = ½ + ½ tanh(x/2) (as ``npegg.models.mingru.sigmoid``); σ' = σ(1 − σ)."""
    return 0.5 + 0.5 * np.tanh(0.5 * x)


def nll_fwd(logits, targets):
    """Mean negative log-likelihood in nats: logits (N, V), targets (N,) → (ℓ, cache)."""
    z = logits - logits.max(axis=-1, keepdims=True)                        # (N, V)
    p = np.exp(z)
    s = p.sum(axis=-1, keepdims=True)
    p /= s                                                                 # softmax (N, V)
    logp_t = z[np.arange(len(z)), targets] - np.log(s[:, 0])               # (N,)
    return -logp_t.mean(), (p, targets, logp_t)


def nll_bwd(cache, scale=1.0):
    """dℓ/dlogits = scale · (softmax − onehot) / N: (N, V)."""
    p, targets, _ = cache
    d = p.copy()
    d[np.arange(len(d)), targets] -= 1.0
    d *= scale / len(d)
    return d
