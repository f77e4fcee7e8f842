"""What a parallel test run (pytest-xdist) keeps apart: each worker picks ports from a share of
its own, and puts its id in the names of the vhosts and nodes it makes."""

from __future__ import annotations

import itertools

import pytest

from harness.broker import unique_name
from harness.private_broker import free_ports, new_node_name

WORKERS = 4


def ports_of(worker: str, monkeypatch: pytest.MonkeyPatch) -> set[int]:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(WORKERS))
    return {port for _ in range(20) for port in free_ports(5)}


def test_each_worker_picks_ports_from_a_share_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    spans = sorted(
        (min(share), max(share))
        for share in (ports_of(f"gw{n}", monkeypatch) for n in range(WORKERS))
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end < start, f"two workers' ports overlap: {spans}"


def test_outside_a_parallel_run_every_port_may_be_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    picked = {port for _ in range(50) for port in free_ports(5)}
    spread = max(picked) - min(picked)
    wide = ports_of("gw0", monkeypatch)
    assert spread > 2 * (max(wide) - min(wide)), "outside a run, ports stay in one share"


def test_names_carry_the_worker_in_a_parallel_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert unique_name("test").startswith("test-gw3-")
    assert new_node_name().startswith("rhtest-gw3-")
    assert unique_name("test") != unique_name("test")
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    name = unique_name("test")
    assert name.startswith("test-") and name.count("-") == 1
