"""int8 rows: exact integer matmul through float BLAS ÷ int64 matmul, int8 ÷ float LM forward, and
one ``npegg train --mode int`` epoch ÷ one float-mode epoch at the defaults."""
from __future__ import annotations

import itertools

import numpy as np

from .report import Row, skipped
from .timing import compare


def intmm_rows(s):
    """``exact_matmul`` of int8 operands ÷ ``np.matmul`` of the same operands widened to int64.

    Exactness is checked in the same run: the two results must be ``np.array_equal``.
    """
    try:
        from npegg.int8.intmm import exact_matmul
    except ImportError:
        yield skipped("int8/exact_matmul", "int8", "exact_matmul (float BLAS)", "int64 matmul",
                      "npegg.int8.intmm not found", ("<=", 0.2))
        return
    rng = np.random.default_rng(0)
    for m, k, n in s.intmm_shapes:
        a = rng.integers(-127, 128, size=(m, k), dtype=np.int8)   # (M, K) int8
        b = rng.integers(-127, 128, size=(k, n), dtype=np.int8)   # (K, N) int8
        a[0] = 127                                                # one row and column at the bound
        b[:, 0] = 127

        def fast():
            return exact_matmul(a, b)

        def slow():
            return np.matmul(a.astype(np.int64), b.astype(np.int64))
        exact = bool(np.array_equal(fast(), slow()))
        if not exact:
            raise AssertionError(f"exact_matmul differs from int64 matmul at {(m, k, n)}")
        c = compare(fast, slow, repeats=s.repeats, min_sample=s.min_sample, budget=s.row_budget)
        yield Row(f"int8/exact_matmul/{m}x{k}x{n}", "int8", "exact_matmul (float BLAS)", "int64 matmul",
                  c.ratio, ("<=", 0.2),
                  {"dtype": "int8 → int64", "M": m, "K": k, "N": n, "exact": exact},
                  c.as_dict(), note="results compared with np.array_equal in the same run")


def int8_lm_rows(s):
    """int8 EGG perturbed forward ÷ float ByteLM (egg cell) perturbed forward: same P, T, H, L."""
    try:
        from npegg.models.egg import EGG, generate
        from npegg.models.lm import ByteLM
        from npegg.noiser.qeggroll import QEggRoll
    except ImportError as e:
        yield skipped(f"int8/lm_forward/D{s.int8_hidden}", "int8", "int8 LM forward", "float LM forward",
                      f"{e.name} not found", ("<=", 1.5))
        return
    from npegg import keys as K
    from npegg.models.common import simple_es_tree_key
    from npegg.noiser import EggRoll
    from .rows_float import noise_table
    from .rows_lm import byte_windows

    P, T, H, L = s.int8_pop, s.int8_tokens, s.int8_hidden, s.lm_layers
    tokens, targets = byte_windows(P, T)
    members = np.arange(P)
    epochs = itertools.count(1)      # a new epoch per call: noise built once per forward (rows_lm)

    q_init = EGG.rand_init(K.key(0), hidden_dim=H, n_layers=L)
    q_keys = simple_es_tree_key(q_init.params, K.key(1), q_init.scan_map)
    q_frozen, q_np = QEggRoll.init_noiser(q_init.params, noise_log2_size=s.int8_noise_log2)
    q_state = np.zeros((P, L, H), np.int8)

    def int8_forward():
        return generate(QEggRoll, q_frozen, q_np, q_init.frozen_params, q_init.params, q_keys,
                        (next(epochs), members), tokens, targets, q_state).loss_sum

    f_init = ByteLM.rand_init(K.key(0), hidden_dim=H, n_layers=L, cell="egg")
    f_keys = simple_es_tree_key(f_init.params, K.key(1), f_init.scan_map)
    f_frozen, f_np = EggRoll.init_noiser(f_init.params, 0.05, 1e-3, rank=1, noise=noise_table(cache=True))
    f_state = ByteLM.init_state(f_init.frozen_params, P)

    def float_forward():
        return ByteLM.forward(EggRoll, f_frozen, f_np, f_init.frozen_params, f_init.params, f_keys,
                              (next(epochs), members), tokens, f_state, targets=targets)[0]
    c = compare(int8_forward, float_forward, repeats=s.lm_repeats, min_sample=s.min_sample, budget=s.row_budget)
    yield Row(f"int8/lm_forward/D{H}", "int8", "int8 EGG forward (QEggRoll)", "float ByteLM egg forward (EggRoll)",
              c.ratio, ("<=", 1.5),
              {"dtype": "int8 vs float32", "P": P, "T": T, "H": H, "L": L, "rank": 1,
               "int8_table_log2": s.int8_noise_log2},
              c.as_dict(), note="both perturbed, both score every next byte; new noise each call")


def int8_epoch_rows(s):
    """One int-mode epoch (``IntRun.epoch_step``: the int8 EGG perturbed forward, pair fitness and
    Q-EGGROLL's ±1 update) ÷ one float-mode epoch (``FloatRun.epoch_step``), each at the
    ``npegg train`` defaults (± ``s.int8_epoch_train``) over the same P·T random bytes.

    The two models differ as their defaults do (int: the egg cell with its 4H MLP; float: the
    minGRU without one), so this is the price of ``--mode int`` as a user meets it, not of int8
    arithmetic alone (``int8/lm_forward`` compares equal models). New noise every epoch on both
    sides, as in training; each run takes one untimed epoch first (its noise table is built then).
    """
    from dataclasses import replace

    from .rows_roofline import default_run
    cfg_f, float_run = default_run(replace(s, roofline_train=s.int8_epoch_train))
    cfg_i, int_run = default_run(replace(s, roofline_train=s.int8_epoch_train + (("mode", "int"), ("cell", "egg"))))
    for run in (float_run, int_run):
        run.epoch_step()
    c = compare(int_run.epoch_step, float_run.epoch_step, repeats=s.lm_repeats, min_sample=s.min_sample,
                budget=s.row_budget)
    yield Row("int8/epoch_vs_float", "int8", "one int-mode epoch (IntRun.epoch_step)",
              "one float-mode epoch (FloatRun.epoch_step)", c.ratio, ("<=", 1.5),
              {"P": cfg_i.pop_size, "T": cfg_i.tokens_per_update, "int": f"egg D{cfg_i.hidden_dim} L{cfg_i.n_layers}",
               "float": f"{cfg_f.cell} D{cfg_f.hidden_dim} L{cfg_f.n_layers} mlp_ratio {cfg_f.mlp_ratio}",
               "dtype": "int8 vs float32"},
              c.as_dict(), note="both at the `npegg train` defaults, same P·T bytes; int's egg cell has a 4H MLP "
                                "(~2.7x float's matmul FLOPs per byte)")


def rows(s):
    yield from intmm_rows(s)
    yield from int8_lm_rows(s)
    yield from int8_epoch_rows(s)
