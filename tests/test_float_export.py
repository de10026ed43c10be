"""Round trip of the float oracle export: npegg's own float vectors pass npegg's float parity checks."""
import numpy as np

from npegg.export_float import CASES, export_float_vectors
from parity import load
from test_float_parity import check_fitness_units, check_float_eggroll
from test_noise import test_noise_reuse_pattern_matches_reference


def test_exported_float_vectors_pass_the_parity_checks(tmp_path):
    path = export_float_vectors(tmp_path / "float_eggroll_npegg.npz")
    check_float_eggroll(path)
    check_fitness_units(path)
    test_noise_reuse_pattern_matches_reference(path)
    v = load(path)
    assert list(v["meta/cases"]) == [c[0] for c in CASES]
    # the file is not trivial: params move, and the sign of the antithetic pair is in A
    assert not np.array_equal(v["r1_g0_sgd/step2/param/0/weight"], v["param0/0/weight"])
    a = v["r1_g0_sgd/step0/noise/0/weight/A"]
    np.testing.assert_array_equal(a[0], -a[1])
