"""``--method backprop``: the same ByteLM trained by backprop through time, behind the ``Run`` interface.

It is ES's twin in everything but the gradient: the same model, initial parameters (same seed),
optimizer and learning-rate schedule (``npegg.optim``, built exactly as for ES), the same
checkpoint layout and validation. The gradient is ``npegg.backprop.train_step``'s exact one.

**The same bytes.** ES with population P in groups of g reads S = P/g streams, T bytes each per
epoch (every member of a group reads the group's window). A backprop step reads those same S
windows as one batch (S, T): epoch for epoch, backprop sees exactly the bytes ES sees, so "equal
epochs" is "equal data". Each stream's hidden state is carried from step to step (truncated BPTT
over T bytes) and reset before every document start, as ES carries its members' states.
"""
from __future__ import annotations

from dataclasses import replace

from ...backprop import train_step
from ...models.lm import ByteLM
from ..evaluate import LN2
from .float_run import FloatRun


class BackpropRun(FloatRun):
    """ByteLM trained by backprop through time on the S = P/g windows ES would read: θ ← opt(∇θ ℓ),
    ℓ = −mean log p in nats; train bpb = ℓ / ln 2 of the batch before the step."""

    def __init__(self, cfg, corpus=None):
        """FloatRun's model, optimizer and reader; one hidden state per stream instead of per member."""
        super().__init__(cfg, corpus)
        self.streams = cfg.pop_size // cfg.group_size
        self.optimizer = self.es.frozen_noiser_params["solver"]        # optim.<cfg.optimizer>(lr schedule)
        self.hidden = ByteLM.init_state(self.es.frozen_params, self.streams)   # (S, L, D) float32

    def epoch_step(self) -> float:
        windows, data_state = self.reader.next(self.data_state)                # (P, T+1): groups repeat
        windows = windows[::self.cfg.group_size]                               # (S, T+1), one per stream
        params, opt_state, hidden, nats = train_step(
            self.optimizer, self.es.frozen_params, self.state.params, self.state.noiser_params["opt_state"],
            windows[:, :-1], windows[:, 1:], self.hidden)
        self.state = replace(self.state, params=params, epoch=self.state.epoch + 1,
                             noiser_params={**self.state.noiser_params, "opt_state": opt_state})
        self.hidden, self.data_state = hidden, data_state
        return float(nats / LN2)

    def fingerprint(self) -> dict:
        return super().fingerprint()       # the same model as ES's: sample / eval read either


def data_bytes_per_epoch(cfg) -> int:
    """Bytes of the data stream read per epoch by either method: S·T = (P/g)·T."""
    return cfg.pop_size // cfg.group_size * cfg.tokens_per_update


def member_bytes_per_epoch(cfg) -> int:
    """Bytes through the model per epoch: P·T for ES (every member), S·T for backprop."""
    return (data_bytes_per_epoch(cfg) if getattr(cfg, "method", "es") == "backprop"
            else cfg.pop_size * cfg.tokens_per_update)
