"""Backprop through time for ByteLM, gradients written by hand (no autograd): the baseline ES is compared with.

``layers`` (atoms), ``cells`` (minGRU and egg cell through time), ``lm`` (the whole model's loss,
gradient and optimizer step).
"""
from .lm import loss, loss_and_grad, train_step

__all__ = ["loss", "loss_and_grad", "train_step"]
