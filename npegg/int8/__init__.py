"""The int8 fixed-point path: bit-exact with nano-egg's integer EGG model and Q-EGGROLL.

Modules, in reading order:

- ``fixedpoint``: the scalar conventions (×16 fixed point, symmetric int8 range, floor shifts,
  wrapping casts), the integer layer norm with its division table, and the gated recurrent cell;
- ``intmm``: exact integer matmuls at BLAS speed, and the perturbed ``do_mm`` / ``do_emb`` /
  ``get_noisy_standard`` as pure functions of already-signed noise factors;
- ``loglik``: the integer log-likelihood (EXP2 table, LOG2 by exact thresholds);
- ``qes``: Q-EGGROLL's integer fitness, threshold schedule and ±1 leaf update.

One int-mode training generation over a byte stream is the program's (``npegg.program.runs.int_run.int_epoch``).

The semantics are written out in ``docs/int8-spec.md``; section numbers (§) refer to it.
"""
