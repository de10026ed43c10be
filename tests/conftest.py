"""Shared test settings: hypothesis is derandomized (same examples on every run, as numpy's CI
does), with no per-example deadline because BLAS timings vary on a loaded 2-core machine."""
import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))  # `from parity import ...`

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("NPEGG_HYPOTHESIS_PROFILE", "ci"))
