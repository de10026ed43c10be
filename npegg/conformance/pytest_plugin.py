"""The conformance kit as a pytest plugin: one test per operation, for the adapter you name.

    pytest -p npegg.conformance.pytest_plugin --conformance-backend MODULE:ADAPTER \\
        [--conformance-max-examples N] [--conformance-xfail FILE] [--conformance-failures DIR]

Each operation becomes the test ``conformance::<adapter>::<op>``: it passes when every case is
exact or within tolerance, fails with the minimal case and its replay command otherwise, is
skipped with the reason "not claimed" when the adapter does not claim it (never a pass), and is
an expected failure when listed in the ``--conformance-xfail`` file. Without
``--conformance-backend`` the plugin adds nothing.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from .protocol import DIFFERS, KNOWN, NOT_CLAIMED, OPERATIONS, load_adapter


def pytest_addoption(parser):
    group = parser.getgroup("conformance", "npegg conformance kit")
    group.addoption("--conformance-backend", action="append", default=[], metavar="MODULE:ADAPTER",
                    help="run the conformance kit on this adapter (repeatable)")
    group.addoption("--conformance-max-examples", type=int, default=20, help="cases per operation (default 20)")
    group.addoption("--conformance-xfail", default=None, metavar="FILE", help="operations expected to fail")
    group.addoption("--conformance-failures", default="conformance-failures", metavar="DIR",
                    help="where minimal failing cases are saved")


class ConformanceItem(pytest.Item):
    """One operation of one adapter."""

    def __init__(self, *, backend, adapter, op, xfail, **kwargs):
        super().__init__(**kwargs)
        self.backend, self.adapter, self.op, self.xfail = backend, adapter, op, xfail

    def runtest(self):
        """Run the operation's cases (``runner.check_op``); skip if not claimed, xfail if expected."""
        from .runner import check_op
        cfg = self.config
        if self.op not in set(self.adapter.claims):
            pytest.skip(f"{self.op}: {NOT_CLAIMED} by {self.adapter.name}")
        res = check_op(self.adapter, self.op, max_examples=cfg.getoption("conformance_max_examples"),
                       failures=Path(cfg.getoption("conformance_failures")), backend=self.backend,
                       expected_failure=self.op in self.xfail)
        if res.status == KNOWN:
            pytest.xfail(f"{self.op} (listed in --conformance-xfail): {res.message}")
        if res.status == DIFFERS:
            raise ConformanceFailure(res)
        if self.op in self.xfail:
            raise ConformanceFailure(res, f"{self.op} is listed in --conformance-xfail but passed ({res.cases} cases)")

    def repr_failure(self, excinfo):
        """The failure as the kit words it (message, minimal case, replay command), not a traceback."""
        if isinstance(excinfo.value, ConformanceFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        """(backend, no line number, a one-line label) for pytest's report."""
        return self.backend, None, f"conformance {self.adapter.name} {self.op}"


class ConformanceFailure(Exception):
    """A failed (or unexpectedly passing) operation, carrying the kit's report as its message."""

    def __init__(self, res, text=None):
        super().__init__(text or "\n".join(filter(None, [
            f"{res.op}: {res.status} after {res.cases} case(s) ({res.exact} exact, {res.within} within tolerance)",
            res.message, f"minimal case: {res.extra.get('minimal', '')[:600]}", f"replay: {res.replay}"])))


def pytest_collection_modifyitems(session, config, items):
    backends = config.getoption("conformance_backend")
    if not backends:
        return
    from .__main__ import check_writable, read_xfail
    if config.getoption("conformance_max_examples") < 1:
        raise pytest.UsageError(f"--conformance-max-examples must be >= 1, got {config.getoption('conformance_max_examples')}")
    try:                                    # a failures folder that cannot be made: said now, not at the first failure
        check_writable(None, config.getoption("conformance_failures"))
    except ValueError as e:
        raise pytest.UsageError(str(e).replace("--failures", "--conformance-failures")) from e
    xfail = set()
    if config.getoption("conformance_xfail"):
        try:
            xfail = read_xfail(config.getoption("conformance_xfail"))
        except ValueError as e:
            raise pytest.UsageError(str(e).replace("--xfail", "--conformance-xfail")) from e
    for backend in backends:
        try:
            adapter = load_adapter(backend)
        except ValueError as e:
            raise pytest.UsageError(str(e).replace("--backend", "--conformance-backend")) from e
        for op in OPERATIONS:
            items.append(ConformanceItem.from_parent(session, name=f"conformance::{adapter.name}::{op}",
                                                     backend=backend, adapter=adapter, op=op, xfail=xfail))
