"""The operator tools against the real broker: the dead-letter count and rabbitmqctl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.broker import Vhost
from harness.processes import wait_for
from tests.unit.test_report import results_records, run_report, write_lines
from tests.unit.test_watch import CLOSED, rows, run_watch


@pytest.fixture
def results_file(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "results.jsonl", [json.dumps(r) for r in results_records()])


def test_dead_letters_are_counted_from_the_broker(results_file: Path, vhost: Vhost) -> None:
    result = run_report(results_file, "--amqp-url", vhost.url)
    assert result.returncode == 0, result.stderr
    assert "dead-lettered          unknown: there is no queue 'dead_letter' at " in result.stdout

    with vhost.channel() as channel:
        channel.queue_declare("dead_letter", durable=True)
    for n in range(3):
        vhost.publish("dead_letter", f'["bad-{n}"]'.encode())
    result = run_report(results_file, "--amqp-url", vhost.url)
    assert result.returncode == 0, result.stderr
    assert "dead-lettered          3 (messages now in queue 'dead_letter' at " in result.stdout
    assert vhost.depth("dead_letter") == 3  # only looked at


def test_the_real_rabbitmqctl_shows_a_backlog(vhost: Vhost) -> None:
    with vhost.channel() as channel:
        channel.queue_declare("service_a", durable=True)
    for n in range(3):
        vhost.publish("service_a", f'["seq-{n}"]'.encode())
    wait_for(lambda: vhost.depth("service_a") == 3, 10, "3 messages in service_a")
    result = run_watch(
        "--count", "2", "--interval", "0.1", AMQP_URL=vhost.url, MANAGEMENT_URL=CLOSED
    )
    assert result.returncode == 0, result.stderr
    assert f"queues of virtual host {vhost.name!r} from " in result.stdout
    assert rows(result.stdout, "service_a") == [["3", "0", "0", "-"], ["3", "0", "0", "+0.0"]]
    assert rows(result.stdout, "service_b")[0][0] == "-"
