"""`make compare`'s scenarios, short: the broker pipeline loses nothing in any of them, and every
message of the HTTP pipeline is accounted for exactly once (completed, failed at the caller, or
lost). The figures themselves are `make compare`'s (docs/http-vs-broker.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.comparison import SHORT, Observation, broker_pipeline, http_pipeline, observe
from harness.comparison import scenarios as make_scenarios
from harness.processes import Launcher

SCENARIOS = make_scenarios(SHORT)


def assert_consistent(seen: Observation) -> None:
    account = seen.account
    assert account.completed + account.failed + account.lost == account.offered
    assert (account.unaccounted, account.repeated_failures, account.strangers) == (0, 0, 0)
    assert seen.crashed == [], f"{seen.crashed} died without being stopped or killed"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
def test_broker_pipeline_loses_nothing(scenario, start, vhost) -> None:
    seen = observe(broker_pipeline(start, vhost, scenario, SHORT), scenario, SHORT)
    assert_consistent(seen)
    account = seen.account
    assert (account.completed, account.failed, account.lost) == (scenario.count, 0, 0)
    assert account.accepted == scenario.count
    assert account.recovery is not None
    assert seen.first_exit == 0


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
def test_http_pipeline_accounts_for_every_message(scenario, tmp_path: Path) -> None:
    launcher = Launcher(tmp_path, LOG_FORMAT="json")
    try:
        seen = observe(http_pipeline(launcher, scenario, SHORT), scenario, SHORT)
    finally:
        launcher.kill_all()
    assert_consistent(seen)
    account = seen.account
    assert seen.first_exit == (0 if account.failed == account.completed_after_failure == 0 else 1)
    if scenario.name == "steady":
        assert account.completed == scenario.count
