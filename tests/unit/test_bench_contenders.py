"""Every benchmark contender's module loads (a contender that cannot start shows in `make bench`
only as a failed row, a whole run later)."""

from __future__ import annotations

import importlib

import pytest

from bench.contenders import CONTENDERS


@pytest.mark.parametrize("name", list(CONTENDERS))
def test_each_contender_module_imports(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    contender = CONTENDERS[name]
    problem = contender.check()
    if problem:
        pytest.skip(f"{name}: {problem}")
    monkeypatch.setenv("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2F")
    monkeypatch.setenv("BENCH_RESULTS", "/dev/null")
    importlib.import_module(contender.module)
