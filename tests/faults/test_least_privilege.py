"""The pipeline as compose runs it: a user per role with only its rights, only its own queues
declared, every stage taking messages from the stage before it alone (`harness.access`). Under
the faults of `test_faults`, it loses nothing and dead-letters nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.access import AccessVhost
from harness.broker import rabbitmqctl
from harness.pipeline import PipelineRun

COUNT = 2000
SOME_WORK = {"RANDOM_WAIT_MIN": 0.001, "RANDOM_WAIT_MAX": 0.01}


@pytest.fixture
def vhost(base_url: str) -> Iterator[AccessVhost]:
    vhost = AccessVhost(base_url)
    yield vhost
    vhost.delete()


def test_a_killed_replica_and_closed_connections_lose_nothing(start, vhost: AccessVhost) -> None:
    run = PipelineRun(start, vhost, COUNT, env={"PUBLISH_RATE": 400}, logins=vhost)
    run.start_all(replicas=2, **SOME_WORK)
    run.wait_until_completed(0.2, timeout=60)
    run.wait_for_consumers()  # every victim consumes when the faults land
    victim = run.services["service_b"][0]
    run.kill(victim)
    victim.wait(10)
    run.start_service("service_b", **SOME_WORK)
    rabbitmqctl("close_all_connections", "-p", vhost.name, "fault test")
    row = run.finish(
        "a user per role, senders checked: SIGKILL a replica of service_b, then the broker "
        "closes every connection"
    )
    assert row.dead_lettered == 0
    for proc in run.processes():  # each as its own user, after every reconnect too
        user = vhost.role(proc.name.rsplit("-", 1)[0]).user
        urls = {record["url"] for record in proc.messages("connected")}
        assert urls and all(url.startswith(f"amqp://{user}:***@") for url in urls), proc.name
