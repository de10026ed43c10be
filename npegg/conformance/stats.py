"""Statistical conformance: is an implementation with its own RNG equivalent to npegg *in distribution*?

A port that draws its own noise cannot match npegg bit for bit, but it can be run on the same
fixed problem from the same initial parameters with K seeds, and the K values of a metric (the
validation loss after E epochs, the epochs needed to reach a target) compared with npegg's K.
"Looks similar" becomes an **equivalence test**: two one-sided tests (TOST, Schuirmann 1987) on
Welch's t statistic, with a margin stated before the run::

    d = mean(x) − mean(y),  se = √(s²ₓ/nₓ + s²ᵧ/nᵧ),  ν = Welch–Satterthwaite
    H₀⁻: d ≤ −m  rejected when  (d + m)/se > t_{1−α}(ν)
    H₀⁺: d ≥ +m  rejected when  (d − m)/se < −t_{1−α}(ν)
    equivalent  ⇔  both rejected  ⇔  the (1 − 2α) interval d ± t_{1−α}(ν)·se lies inside (−m, m)

On the log scale (``log=True``, for positive metrics: losses, step counts) d is the log of the
ratio of geometric means and the margin a ratio: "needs 10 % more steps" is reported as the
ratio 1.10 with its confidence interval, and equivalence means the whole interval lies within
[1/margin, margin]. *Not equivalent* is not *different*: an interval straddling the margin says
that K seeds cannot tell; ``Equivalence.verdict`` says which of the three it is.

The t distribution is computed here (NumPy is npegg's only dependency): its CDF from the
regularised incomplete beta function (a continued fraction), the quantile by bisection.

The fixed problems are the seed notebook's regression and a tiny byte language model. The first is the seed notebook's regression, y = x² + x + 1 on [−10, 10] (as
``examples/regression.py``), made small: an MLP 1 → 16 → 16 → 1 with the notebook's ``pqn``
activation, P members all scored on the epoch's batch (one group, since the PyTorch ports have
no groups), constant σ and learning rate, SGD. The batches depend only on the epoch and the
initial parameters only on the seed (``regression_init``), so a port loaded with the same
initial parameters and fed the same batches differs from npegg only in its noise and its
arithmetic. The byte LM (``bytelm_*``) is npegg's ByteLM at width 8 with the direct path, trained
on the bytes of a fixed order-1 Markov source over 16 letters (``bytelm_data``): every member reads
the epoch's window (a function of the epoch only), the metric is the plain model's validation bits
per byte after E epochs, so a port's byte LM is compared on the quantity ``npegg train`` reports.
Mirrors: no reference function (the reference has no statistical tests).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# -- Student's t, NumPy and math only ----------------------------------------------------------------


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b), by its continued fraction (modified Lentz), using
    I_x(a, b) = 1 − I_{1−x}(b, a) where the fraction converges slowly (x > (a + 1)/(a + b + 2))."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = a * math.log(x) + b * math.log1p(-x) - math.log(a) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    frac = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),                    # even step
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):        # odd step
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            frac *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * frac


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with df > 0 degrees of freedom: 1 − ½·I_{ν/(ν+t²)}(ν/2, ½) for t ≥ 0."""
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    y = t * t / (df + t * t)            # 1 − x, formed directly: near t = 0, x = ν/(ν + t²) rounds to 1
    if y < 0.5:
        tail = 0.5 * (1.0 - _betainc(0.5, df / 2.0, y))        # I_x(a, b) = 1 − I_{1−x}(b, a)
    else:
        tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's t (0 < q < 1), by bisection on ``t_cdf`` to ~1e-12 relative."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < q else (lo, mid)
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


# -- the equivalence test -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Equivalence:
    """One TOST comparison of a candidate's K values with the reference's (npegg's).

    ``estimate`` and ``ci`` are a difference of means (``log=False``) or a ratio of geometric means
    (``log=True``); ``margin`` is ±m or the ratio bound; ``p`` the TOST p-value (the larger of the
    two one-sided ones); ``equivalent`` iff p < α (iff the (1 − 2α) interval is inside the margin).
    """
    metric: str
    log: bool
    estimate: float
    ci: tuple
    margin: float
    alpha: float
    p: float
    df: float
    n: tuple = field(default=(0, 0))
    equivalent: bool = False

    @property
    def verdict(self) -> str:
        """'equivalent', 'different' (the whole interval outside the margin) or 'inconclusive'."""
        lo_bound, hi_bound = (1.0 / self.margin, self.margin) if self.log else (-self.margin, self.margin)
        if self.equivalent:
            return "equivalent"
        if self.ci[0] > hi_bound or self.ci[1] < lo_bound:
            return "different"
        return "inconclusive"

    def summary(self) -> str:
        """One line: the effect with its interval, the margin and the verdict."""
        level = round(100 * (1 - 2 * self.alpha))
        if self.log:
            eff = f"ratio {self.estimate:.3f} [{self.ci[0]:.3f}, {self.ci[1]:.3f}] ({level} % CI)"
            bound = f"margin [{1 / self.margin:.3f}, {self.margin:.3f}]"
        else:
            eff = f"difference {self.estimate:+.4g} [{self.ci[0]:+.4g}, {self.ci[1]:+.4g}] ({level} % CI)"
            bound = f"margin ±{self.margin:.4g}"
        return (f"{self.metric}: {eff}, {bound}, TOST p = {self.p:.3g}, n = {self.n[0]} vs {self.n[1]}: "
                f"{self.verdict}")


def tost(candidate, reference, margin: float, *, log: bool = False, alpha: float = 0.05,
         metric: str = "metric") -> Equivalence:
    """Welch two one-sided tests of mean(candidate) − mean(reference) against ±margin (see the module).

    candidate, reference: (K,) and (K',) finite values, K, K' ≥ 2 (positive when ``log``);
    margin > 0 (> 1 when ``log``: a ratio); 0 < alpha < 0.5.
    """
    x, y = (np.asarray(v, dtype=np.float64).ravel() for v in (candidate, reference))
    for name, v in (("candidate", x), ("reference", y)):
        if v.size < 2 or not np.isfinite(v).all():
            raise ValueError(f"{name} needs at least 2 finite values, got {v.size} ({v[~np.isfinite(v)][:3]} non-finite)")
        if log and (v <= 0).any():
            raise ValueError(f"{name} must be positive with log=True, got min {v.min()}")
    if log and not margin > 1:
        raise ValueError(f"margin must be a ratio > 1 with log=True, got {margin}")
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if log:
        x, y, m = np.log(x), np.log(y), math.log(margin)
    else:
        m = float(margin)
    d = float(x.mean() - y.mean())
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    if se == 0.0:       # no spread at all: the difference is known exactly
        df, half, p = float(x.size + y.size - 2), 0.0, (0.0 if abs(d) < m else 1.0)
    else:
        df = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1))
        half = t_ppf(1 - alpha, df) * se
        p = max(1.0 - t_cdf((d + m) / se, df), t_cdf((d - m) / se, df))
    lo, hi = d - half, d + half
    if log:
        d, lo, hi = math.exp(d), math.exp(lo), math.exp(hi)
    return Equivalence(metric, log, d, (lo, hi), float(margin), alpha, float(p), float(df), (x.size, y.size),
                       bool(p < alpha))


# -- the fixed problem: the seed notebook's regression, small --------------------------------------

#: the regression problem's settings (shared by npegg's runs and every port's)
REGRESSION = dict(hidden=(16, 16), pop_size=64, sigma=0.5, lr=0.3, batch=32, epochs=150, target_mse=300.0)


def regression_data():
    """(train_x, train_y, test_x, test_y): 1024 points each, x uniform on [−10, 10], y = x² + x + 1,
    float32, from ``np.random.default_rng(0)`` (the data of examples/regression.py)."""
    rng = np.random.default_rng(0)
    train_x = rng.uniform(-10, 10, 1024).astype(np.float32)
    test_x = rng.uniform(-10, 10, 1024).astype(np.float32)
    f = lambda x: x ** 2 + x + 1
    return train_x, f(train_x), test_x, f(test_x)


def regression_batch(epoch: int, batch: int = REGRESSION["batch"]) -> np.ndarray:
    """Indices (batch,) into the training set of an epoch's batch: a function of the epoch only."""
    return np.random.default_rng([1, epoch]).integers(0, 1024, batch)


def regression_es(seed: int, **overrides):
    """npegg's ES and initial state for the regression problem (``REGRESSION`` with ``overrides``)."""
    from ..es import ES
    from ..models import MLP
    cfg = {**REGRESSION, **overrides}
    extra = {k: cfg[k] for k in ("solver", "fitness", "rank", "noise") if k in cfg}
    return ES.create(MLP, dict(in_dim=1, out_dim=1, hidden_dims=list(cfg["hidden"]), activation="pqn"),
                     pop_size=cfg["pop_size"], sigma=cfg["sigma"], lr=cfg["lr"], seed=seed, **extra)


def regression_init(seed: int) -> dict:
    """npegg's initial parameters for ``seed``: {'0/weight': (16, 1), '0/bias': (16,), …} float32,
    weights (out, in) as torch.nn.Linear stores them; what every implementation starts from."""
    from ..tree import flatten
    _, state = regression_es(seed)
    return {k: np.array(v, dtype=np.float32) for k, v in flatten(state.params).items()}


def regression_curve(seed: int, epochs: int | None = None, stop_at: float | None = None, **overrides) -> np.ndarray:
    """npegg's validation MSE after each epoch (≤ epochs,): P members scored −MSE on the epoch's batch;
    ``stop_at``: stop after the first epoch whose MSE is ≤ it (enough for ``epochs_to_target``)."""
    epochs = REGRESSION["epochs"] if epochs is None else epochs
    es, state = regression_es(seed, **overrides)
    train_x, train_y, test_x, test_y = regression_data()
    curve = []
    for epoch in range(epochs):
        idx = regression_batch(epoch)
        x = np.broadcast_to(train_x[idx][None, :, None], (es.pop_size, idx.size, 1))    # (P, B, 1)
        out = es.forward(state, x)[..., 0]                                              # (P, B)
        state = es.step(state, -np.mean((out - train_y[idx]) ** 2, axis=1))            # raw (P,)
        curve.append(float(np.mean((es.evaluate(state, test_x[:, None])[:, 0] - test_y) ** 2)))
        if stop_at is not None and curve[-1] <= stop_at:
            break
    return np.array(curve)


def epochs_to_target(curve, target: float = REGRESSION["target_mse"], epochs: int = REGRESSION["epochs"]) -> float:
    """The first epoch (1-based) whose validation MSE is ≤ target; epochs + 1 if none is (censored:
    a run that never reaches the target counts as needing more than the budget, which can only
    make it look better than it is)."""
    hit = np.flatnonzero(np.asarray(curve) <= target)
    return float(hit[0] + 1) if hit.size else float(epochs + 1)


def npegg_epochs(seeds, **overrides) -> np.ndarray:
    """npegg's epochs to the target MSE for each seed (K,): the reference sample of ``tost``."""
    target = overrides.pop("target", REGRESSION["target_mse"])
    return np.array([epochs_to_target(regression_curve(s, stop_at=target, **overrides), target) for s in seeds])


# -- the fixed problem: a tiny byte language model ------------------------------------------------

#: the byte LM problem's settings: ByteLM (minGRU, 1 layer, width 8, direct path), Adam, one group
BYTELM = dict(hidden_dim=8, pop_size=64, sigma=0.05, lr=0.05, tokens=64, epochs=100, letters=16, train_bytes=20_000,
              valid_bytes=4096)


def bytelm_data() -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) uint8 bytes 'a'… of an order-1 Markov source over ``letters`` symbols whose rows of
    transition probabilities are Dirichlet(0.3) draws of ``np.random.default_rng(0)``; train from
    ``default_rng(1)``, valid from ``default_rng(2)``, each chain starting at 'a'. A bigram table is the
    best model of it, which the direct path can hold."""
    k = BYTELM["letters"]
    cum = np.random.default_rng(0).dirichlet(np.full(k, 0.3), size=k).cumsum(axis=1)      # (k, k)

    def chain(n, seed):
        u, out, s = np.random.default_rng(seed).random(n), np.empty(n, np.uint8), 0
        for i in range(n):
            s = min(int(np.searchsorted(cum[s], u[i])), k - 1)
            out[i] = 97 + s
        return out
    return chain(BYTELM["train_bytes"], 1), chain(BYTELM["valid_bytes"], 2)


def bytelm_window(epoch: int, train: np.ndarray, tokens: int = BYTELM["tokens"]) -> np.ndarray:
    """The epoch's (tokens + 1,) window of the training bytes, every member's: a function of the epoch only."""
    start = int(np.random.default_rng([3, epoch]).integers(0, len(train) - tokens - 1))
    return train[start:start + tokens + 1]


def bytelm_es(seed: int, **overrides):
    """npegg's ES and initial state for the byte LM problem (``BYTELM`` with ``overrides``)."""
    from ..es import ES
    from ..models.lm import ByteLM
    cfg = {**BYTELM, **overrides}
    return ES.create(ByteLM, dict(hidden_dim=cfg["hidden_dim"], n_layers=1, cell="mingru", mlp_ratio=0,
                                  direct_path=True), pop_size=cfg["pop_size"], sigma=cfg["sigma"], lr=cfg["lr"],
                     seed=seed, solver="adam")


def bytelm_bpb(seed: int, epochs: int | None = None, **overrides) -> float:
    """npegg's validation bits per byte after ``epochs`` (default ``BYTELM['epochs']``): raw score of a
    member = Σₜ log p of the epoch's window from a zero state; validation = the plain model over the
    whole validation stream as one sequence, −mean log₂ p."""
    from ..models.lm import ByteLM
    cfg = {**BYTELM, **overrides}
    epochs = cfg["epochs"] if epochs is None else epochs
    es, state = bytelm_es(seed, **overrides)
    train, valid = bytelm_data()
    P = es.pop_size
    zero = ByteLM.init_state(es.frozen_params, P)                                        # (P, 1, D)
    for epoch in range(epochs):
        w = np.broadcast_to(bytelm_window(epoch, train, cfg["tokens"]), (P, cfg["tokens"] + 1))
        ll, _ = es.forward(state, w[:, :-1], zero, targets=w[:, 1:])                      # (P, T) nats
        state = es.step(state, ll.sum(axis=1, dtype=np.float64))
    ll, _ = es.evaluate(state, valid[None, :-1], ByteLM.init_state(es.frozen_params, 1), targets=valid[None, 1:])
    return float(-ll.mean() / math.log(2))


def npegg_bpb(seeds, **overrides) -> np.ndarray:
    """npegg's validation bits per byte of the byte LM problem for each seed (K,): ``tost``'s reference sample."""
    return np.array([bytelm_bpb(s, **overrides) for s in seeds])
