"""npegg's speed, measured: every figure a ratio of two things timed side by side in one run.

Run ``python -m benchmarks`` from the repository root (``--quick`` for a smoke run, ``--help``
for the flags). Modules, in reading order:

- ``timing``: the interleaved median-of-repeats timer (``compare``);
- ``settings``: the inputs of every row and why they were chosen;
- ``rows_float``: perturbed ÷ plain population forward (Linear, MLP), update ÷ forward, OpenES ÷ EggRoll;
- ``rows_lm``: the language-model step, the minGRU's forward ÷ its step loop, peak memory of ``npegg train``;
- ``rows_int8``: exact int8 matmul through float BLAS ÷ int64 matmul, int8 ÷ float LM forward, int ÷ float epoch;
- ``report``: rows, the printed table and the JSON file;
- ``run``: the command line;
- ``int8_forward.py``: a standalone script, int8 EGG forward against a hand-written float32 twin.

Nothing here is imported by ``npegg``; NumPy is loaded only when ``run.main`` starts, so that
``--threads`` can still pin the BLAS thread count.
"""
