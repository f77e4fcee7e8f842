"""The pipeline against a broker that restarts, is not there yet, or blocks publishers.

Each test runs its own RabbitMQ node (`harness.private_broker.PrivateBroker`), so it may stop the
node or raise an alarm on it without the shared broker, or another test, noticing. The `vhost`
fixture is overridden here, so conftest's `start` points every process at the private node (and
each process is also given the private node's AMQP_URL explicitly).

Every scenario moves 2,000 messages through 10 workers per stage, with a little work per message
and `first` publishing at a set rate, so that the fault lands while messages are in flight at
every stage; then `PipelineRun.finish` checks that each completed exactly once by id, that no
queue holds anything and that no process crashed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.retry import retry_delay
from common.topology import STAGES
from harness.pipeline import PipelineRun
from harness.private_broker import BrokerUnavailable, DefaultVhost, PrivateBroker, reap_orphans
from harness.processes import Proc, wait_for, wait_for_each

COUNT = 2000
PIPELINE_ENV = {
    "CONNECT_TIMEOUT": 60,  # far longer than any outage here: nobody may give up
    "RANDOM_WAIT_MIN": 0.001,
    "RANDOM_WAIT_MAX": 0.01,
}
PUBLISH_RATE = 150  # messages/s: `first` publishes for about 13 s, so it is mid-run at the fault
READY_TIMEOUT = 60
OUTAGE = 5.0  # broker restart: how long the node stays down
ABSENT_FOR = 15.0  # broker absent at start: how long before the node first starts
ALARM_FOR = 5.0  # memory alarm: how long it lasts

RETRYING = "broker not reachable, retrying"
LOST = "connection lost, reconnecting"
CONNECTED = "connected"
BLOCKED = "broker blocked publishing (memory or disk alarm); waiting for it to clear"
UNBLOCKED = "broker unblocked publishing"


@pytest.fixture
def stopped_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A private node, configured but not started; destroyed at the end whatever happens.

    Its log directory is kept in `tmp_path`, next to the processes' output.
    """
    reap_orphans()
    try:
        broker = PrivateBroker(tmp_path)
    except BrokerUnavailable as error:
        pytest.skip(str(error))
    try:
        yield broker
    finally:
        broker.destroy(keep_logs_in=tmp_path)


@pytest.fixture
def private_broker(stopped_broker: PrivateBroker) -> PrivateBroker:
    """A private node, started and accepting connections."""
    stopped_broker.start()
    stopped_broker.wait_until_ready(READY_TIMEOUT)
    return stopped_broker


@pytest.fixture
def vhost(stopped_broker: PrivateBroker) -> DefaultVhost:
    """Overrides conftest's: the private node's "/" instead of a vhost on the shared broker."""
    return stopped_broker.vhost()


def pipeline(start, broker: PrivateBroker) -> PipelineRun:
    return PipelineRun(start, broker.vhost(), COUNT, env={"AMQP_URL": broker.url, **PIPELINE_ENV})


def start_paced(run: PipelineRun) -> None:
    """last, the three services (10 workers each); once all consume, `first` publishing at
    PUBLISH_RATE (so that its 13 s of publishing are not spent while the others start, on a
    busy machine, and the fault lands while it publishes)."""
    run.start_last()
    for queue in STAGES:
        run.start_service(queue)
    run.wait_for_consumers(READY_TIMEOUT)
    run.start_first(PUBLISH_RATE=PUBLISH_RATE)


def count(proc: Proc, message: str) -> int:
    return len(proc.messages(message))


def errors(proc: Proc) -> list[dict]:
    return [r for r in proc.records() if r.get("level") == "ERROR"]


def lines_within(seconds: float) -> int:
    """The most "retrying" lines the back-off allows in `seconds`: one per failed attempt."""
    elapsed = 0.0
    for attempt in itertools.count(1):
        elapsed += retry_delay(attempt)  # the wait after this attempt
        if elapsed > seconds:
            return attempt
    raise AssertionError("unreachable")


def test_every_process_reconnects_after_a_broker_restart(start, private_broker) -> None:
    run = pipeline(start, private_broker)
    start_paced(run)
    run.wait_until_completed(0.05, timeout=60)
    procs = run.processes()
    for proc in procs:
        assert proc.running, f"{proc.name} ended before the fault:\n{proc.tail()}"
    before = {proc: (count(proc, LOST), count(proc, CONNECTED)) for proc in procs}

    private_broker.stop()
    down_since = time.monotonic()
    wait_for_each(
        procs,
        lambda p: count(p, LOST) > before[p][0] and count(p, RETRYING),
        30,
        "every process to notice the broker has gone, and to retry",
    )
    time.sleep(max(0.0, down_since + OUTAGE - time.monotonic()))  # the outage is the scenario
    for proc in procs:
        assert proc.running, f"{proc.name} exited in the outage:\n{proc.tail()}"

    private_broker.start()
    private_broker.wait_until_ready(READY_TIMEOUT)
    wait_for_each(
        procs, lambda p: count(p, CONNECTED) > before[p][1], 30, "every process to reconnect"
    )
    run.finish("broker restart", timeout=90, notes=f"node down {OUTAGE:g} s mid-run")
    for proc in procs:
        assert errors(proc) == [], proc.tail()


def test_every_process_waits_for_a_broker_absent_at_start(start, stopped_broker) -> None:
    run = pipeline(start, stopped_broker)
    run.start_all()
    time.sleep(ABSENT_FOR)  # the absence is the scenario

    most = lines_within(ABSENT_FOR)
    for proc in run.processes():
        assert proc.running, f"{proc.name} exited:\n{proc.tail()}"
        retries = proc.messages(RETRYING)
        # One line per attempt, on the back-off schedule: no flood, and no silence either.
        assert 4 <= len(retries) <= most, (proc.name, len(retries), most)
        numbers = range(1, len(retries) + 1)
        assert [r["attempts"] for r in retries] == list(numbers), proc.name
        assert [r["retry_in_s"] for r in retries] == [retry_delay(n) for n in numbers]
        assert not proc.messages(CONNECTED), proc.name
        assert errors(proc) == [], proc.tail()
        assert proc.stderr() == "", proc.stderr()

    stopped_broker.start()
    stopped_broker.wait_until_ready(READY_TIMEOUT)
    run.finish("broker absent at start", timeout=90, notes=f"node up {ABSENT_FOR:g} s late")


def test_first_waits_out_a_memory_alarm(start, private_broker) -> None:
    run = pipeline(start, private_broker)
    start_paced(run)
    [first] = run.firsts
    run.wait_until_completed(0.05, timeout=60)
    assert first.running, "first ended before the alarm:\n" + first.tail()

    private_broker.rabbitmqctl("set_vm_memory_high_watermark", "0.0000001")
    raised = time.monotonic()
    try:
        wait_for(lambda: first.messages(BLOCKED), 30, "first to be blocked")
        time.sleep(max(0.0, raised + ALARM_FOR - time.monotonic()))  # the alarm is the scenario
        assert first.running, "first exited while blocked:\n" + first.tail()
        assert not first.messages("published"), "first finished while blocked"
        assert not first.messages(UNBLOCKED), "first was unblocked while the alarm was on"
        assert errors(first) == [], first.tail()
    finally:
        private_broker.rabbitmqctl("set_vm_memory_high_watermark", "0.4")  # the default
    wait_for(lambda: first.messages(UNBLOCKED), 30, "first to be unblocked")
    run.finish("memory alarm", timeout=90, notes=f"publishers blocked {ALARM_FOR:g} s")
    assert errors(first) == [], first.tail()
