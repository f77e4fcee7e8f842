"""Faults on the shared broker, scoped to the test's vhost: kill, disconnect, stop, poison.

Each scenario runs the pipeline as separate processes with at least 2,000 messages and ends with
`PipelineRun.finish`, which checks that every message completed exactly once by id.
"""

from __future__ import annotations

import signal

import pytest

from common.messages import Message
from common.settings import BrokerSettings, Env
from common.topology import STAGES
from harness.broker import rabbitmqctl
from harness.pipeline import PipelineRun
from harness.processes import wait_for

COUNT = 2000
SOME_WORK = {"RANDOM_WAIT_MIN": 0.001, "RANDOM_WAIT_MAX": 0.01}


@pytest.fixture
def run(start, vhost) -> PipelineRun:
    return PipelineRun(start, vhost, COUNT)


def test_sigkill_one_replica_of_each_stage(run: PipelineRun) -> None:
    run.start_all(replicas=2, **SOME_WORK)
    run.wait_until_completed(0.2, timeout=60)
    run.wait_for_consumers()  # every victim consumes when the fault lands
    for stage in STAGES:
        victim = run.services[stage][0]
        run.kill(victim)
        victim.wait(10)
        run.start_service(stage, **SOME_WORK)
    run.finish("SIGKILL one replica of each stage, then replace it")


def test_broker_closes_every_connection(run: PipelineRun) -> None:
    run.env = {"PUBLISH_RATE": 400}  # a run of 5 s, so that the fault hits every stage mid-run
    run.start_all(**SOME_WORK)
    run.wait_until_completed(0.2, timeout=60)
    run.wait_for_consumers()  # every victim consumes when the fault lands
    rabbitmqctl("close_all_connections", "-p", run.vhost.name, "fault test")
    run.finish("broker closes every connection mid-run")
    for proc in run.processes():
        if proc not in run.firsts:
            assert proc.messages("connection lost, reconnecting"), proc.name
            assert len(proc.messages("connected")) == 2, proc.name


def test_sigterm_drains_each_service_and_last(run: PipelineRun) -> None:
    run.start_all(RANDOM_WAIT_MIN=0.005, RANDOM_WAIT_MAX=0.02)
    run.wait_until_completed(0.2, timeout=60)
    run.wait_for_consumers()  # every victim consumes when the fault lands
    for stage in STAGES:
        leaving = run.services[stage][0]
        run.kill(leaving, signal.SIGTERM)
        assert leaving.wait(20) == 0, leaving.tail()
        assert leaving.messages("stopping: finishing messages in hand")
        run.start_service(stage, **SOME_WORK)
    leaving = run.lasts[0]
    run.kill(leaving, signal.SIGTERM)
    assert leaving.wait(20) == 0, leaving.tail()
    assert leaving.messages("summary")
    run.start_last()
    run.finish("SIGTERM each service and last mid-run")


def test_work_longer_than_the_heartbeat_keeps_the_connection(run: PipelineRun) -> None:
    run.count = 40
    run.env = {"HEARTBEAT": 1}
    run.start_all(WORKERS=20, RANDOM_WAIT_MIN=3, RANDOM_WAIT_MAX=3.5)
    row = run.finish("work (3 s) longer than the heartbeat (1 s)", timeout=120)
    assert row.duplicates_delivered == 0
    for proc in run.processes():
        assert not proc.messages("connection lost, reconnecting"), proc.tail()


def test_poison_message_is_retried_then_dead_lettered(run: PipelineRun) -> None:
    run.poison = {13}
    run.dead_bodies[b'["seq-13","service_a"]'] = 1
    run.start_last()
    run.start_service("service_a", **SOME_WORK)
    run.start_service("service_b", FAIL_ON_SEQ=13, **SOME_WORK)
    run.start_service("service_c", **SOME_WORK)
    run.start_first()
    wait_for(lambda: run.vhost.depth("dead_letter") == 1, 60, "the poison message")
    [(properties, body)] = run.vhost.drain("dead_letter")
    assert body == b'["seq-13","service_a"]'
    reason = properties.headers["x-error-reason"]
    limit = BrokerSettings.from_env(Env({})).delivery_limit
    expected = f"failed on delivery {limit}: RuntimeError: simulated failure on seq-13"
    assert reason.startswith(expected), reason
    assert properties.headers["x-error-queue"] == "service_b"
    run.vhost.publish("dead_letter", body, properties)  # put it back for finish() to count
    retries = run.services["service_b"][0].messages("processing failed, requeued")
    assert len(retries) == limit - 1
    run.finish("poison message: retried to the delivery limit, then dead-lettered")


def test_graceful_restarts_do_not_use_up_the_delivery_limit(start, vhost) -> None:
    """A drain finishes what it holds instead of handing it back: on RabbitMQ 3.x every message
    handed back counts as a delivery, and enough restarts would dead-letter healthy messages."""
    count, limit = 60, 5  # a low limit, so that seven hand-backs would show
    vhost.declare("service_a", "service_b", "dead_letter", DELIVERY_LIMIT=str(limit))
    for seq in range(1, count + 1):
        vhost.publish("service_a", *Message.first(seq, 1.0).encode())
    for restart in range(7):
        service = start(
            "service",
            f"service_a-{restart}",
            WORKERS=1,
            RANDOM_WAIT_MAX=0.01,
            DELIVERY_LIMIT=limit,
        )
        wait_for(lambda s=service: s.messages("consuming"), 30, "service_a to consume")
        service.signal(signal.SIGTERM)
        assert service.wait(30) == 0, service.tail()
    start("service", "service_a-final", WORKERS=1, DELIVERY_LIMIT=limit)
    wait_for(lambda: vhost.depth("service_b") == count, 60, "every message in service_b")
    assert vhost.depth("dead_letter") == 0
