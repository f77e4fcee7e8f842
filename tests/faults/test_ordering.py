"""Per-key order (ORDERING=keyed) under load and a replica's death, against the default mode.

Every scenario runs 2,000 messages of 20 keys through first -> a -> b -> c -> last, with three
replicas of service_b and a little random work per message, so that messages overtake each
other wherever they can. The check is `last`'s first completion of each message: within a key,
none may complete after a later message (a higher seq-N) of that key.

RabbitMQ 3.10 (the local broker) makes the first subscriber the active consumer of every
partition; from 3.13 quorum queues honour consumer priorities, and the partitions spread over the
replicas by their rendezvous scores. That part is checked against RabbitMQ 4.0 in Docker, where
Docker runs (`make test-docker`); elsewhere it is skipped, saying so.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest

from common.settings import BrokerSettings, Env
from common.topology import consumer_priority, input_queues
from harness.broker import Vhost, rabbitmqctl_command
from harness.docker_broker import DockerBroker, DockerUnavailable, docker_available
from harness.pipeline import PipelineRun
from harness.processes import Proc, wait_for
from tools.queue_stats import Rabbitmqctl
from tools.report.ordering import KeyOrdering, key_ordering

COUNT = 2000
KEYED = {"ORDERING": "keyed", "PARTITIONS": 6}
LOAD = {"KEYS": 20, "RANDOM_WAIT_MIN": 0.001, "RANDOM_WAIT_MAX": 0.02}  # a backlog: overtaking
REPLICAS = ("b-1", "b-2", "b-3")
PARTITIONS = input_queues(
    "service_b", BrokerSettings.from_env(Env({k: str(v) for k, v in KEYED.items()}))
)


def key_order(run: PipelineRun) -> KeyOrdering:
    """Order within each key at `last`, by each message's first completion."""
    records = sorted(run.completed(), key=lambda r: r["data"]["completed_at"])
    firsts, seen = [], set()
    for record in records:
        if record["broker_message_id"] not in seen:
            seen.add(record["broker_message_id"])
            firsts.append((record["key"], int(record["history"][0][4:])))
    return key_ordering(firsts)


def start_pipeline(run: PipelineRun) -> dict[str, Proc]:
    """last, service_a, the three service_b replicas one after another (b-1 subscribes first),
    service_c, then first."""
    run.start_last()
    run.start_service("service_a")
    replicas = {}
    for replica in REPLICAS:
        replicas[replica] = run.start_service("service_b", REPLICA_ID=replica)
        wait_for(lambda p=replicas[replica]: p.messages("consuming"), 30, f"{replica} consuming")
    run.start_service("service_c")
    run.wait_for_consumers()
    run.start_first()
    return replicas


def wait_for_holders(
    command: list[str], vhost: Vhost, allowed: Callable[[str], tuple[str, ...]]
) -> None:
    """Wait until every partition of service_b is held by one of `allowed(partition)`."""
    wait_for(
        lambda: all(
            Rabbitmqctl(command, vhost.name).holders().get(p) in allowed(p) for p in PARTITIONS
        ),
        30,
        "the partitions to pass to the replicas left",
    )


def expected_holder(partition: str, alive: tuple[str, ...]) -> str:
    """The replica the broker should make active on `partition`: the highest priority."""
    return max(alive, key=lambda r: consumer_priority(f"service_b@{r}", partition))


def test_keyed_mode_keeps_every_keys_order_through_a_replica_kill(start, vhost: Vhost) -> None:
    run = PipelineRun(start, vhost, COUNT, env={**KEYED, **LOAD})
    replicas = start_pipeline(run)
    run.wait_until_completed(0.25, timeout=90)
    holders = Rabbitmqctl(rabbitmqctl_command(), vhost.name).holders()
    assert {holders.get(p) for p in PARTITIONS} <= {f"service_b@{r}" for r in REPLICAS}
    victim = replicas["b-1"]  # on 3.10, the first to subscribe holds every partition
    run.kill(victim)
    wait_for_holders(
        rabbitmqctl_command(), vhost, lambda _partition: ("service_b@b-2", "service_b@b-3")
    )
    row = run.finish(
        "keyed: 20 keys, a replica of service_b SIGKILLed mid-run",
        timeout=180,
        notes="0 completions out of key order (checked)",
    )
    order = key_order(run)
    assert (row.lost, order.total, order.keys) == (0, 0, 20), order


def test_keyed_mode_keeps_every_keys_order_through_a_graceful_stop(start, vhost: Vhost) -> None:
    """SIGTERM (`docker compose stop`, a rolling restart) to the replica holding every partition:
    it finishes what it has in work and hands back what waits, and the next replica takes over
    only then (a cancel would have made it active while keys were still in work)."""
    run = PipelineRun(start, vhost, COUNT, env={**KEYED, **LOAD})
    replicas = start_pipeline(run)
    run.wait_until_completed(0.25, timeout=90)
    leaving = replicas["b-1"]  # on 3.10, the first to subscribe holds every partition
    run.kill(leaving, signal.SIGTERM)
    assert leaving.wait(30) == 0, leaving.tail()
    [stopped] = leaving.messages("stopped: every message in work finished")
    row = run.finish(
        "keyed: the replica holding the partitions stopped gracefully mid-run",
        timeout=180,
        notes=f"0 out of key order (checked); it handed back {stopped['handed_back']} unstarted",
    )
    order = key_order(run)
    assert (row.lost, order.total, order.keys) == (0, 0, 20), order


def test_the_default_mode_under_the_same_load_breaks_key_order(start, vhost: Vhost) -> None:
    """The check can fail: without ORDERING=keyed, messages of a key overtake each other."""
    run = PipelineRun(start, vhost, COUNT, env=LOAD)
    start_pipeline(run)
    run.wait_until_completed(1.0, timeout=180)
    order = key_order(run)
    assert order.total > 0 and order.keys == 20, order
    run.finish(
        "unordered (the default), same load: the order check bites",
        notes=f"{order.total} completions out of key order, in {order.keys_affected} of 20 keys",
    )


@pytest.fixture
def rabbitmq_4(monkeypatch: pytest.MonkeyPatch) -> Iterator[DockerBroker]:
    if not docker_available():
        pytest.skip("no Docker engine answers: partitions spreading needs RabbitMQ >= 3.13")
    broker = DockerBroker()
    try:
        broker.start()
    except DockerUnavailable as error:
        broker.stop()
        pytest.skip(f"cannot start {broker.image} in Docker: {error}")
    monkeypatch.setenv("RABBITMQCTL", broker.rabbitmqctl)
    yield broker
    broker.stop()


@pytest.mark.docker
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_on_rabbitmq_4_partitions_spread_and_move_when_a_replica_goes(
    start, rabbitmq_4, sig: signal.Signals
) -> None:
    vhost = Vhost(rabbitmq_4.url)
    command = rabbitmq_4.rabbitmqctl.split()
    run = PipelineRun(start, vhost, COUNT, env={"AMQP_URL": vhost.url, **KEYED, **LOAD})
    replicas = start_pipeline(run)
    run.wait_until_completed(0.1, timeout=90)

    holders = Rabbitmqctl(command, vhost.name).holders()
    assert {p: holders.get(p) for p in PARTITIONS} == {
        p: f"service_b@{expected_holder(p, REPLICAS)}" for p in PARTITIONS
    }
    busiest = max(REPLICAS, key=lambda r: list(holders.values()).count(f"service_b@{r}"))
    assert len({holders[p] for p in PARTITIONS}) > 1, "every partition on one replica"

    run.kill(replicas[busiest], sig)
    alive = tuple(r for r in REPLICAS if r != busiest)
    wait_for_holders(command, vhost, lambda p: (f"service_b@{expected_holder(p, alive)}",))
    row = run.finish(
        f"keyed on RabbitMQ 4.0: partitions spread, their busiest holder sent {sig.name}",
        timeout=180,
        notes="0 completions out of key order (checked)",
    )
    order = key_order(run)
    assert (row.lost, order.total, order.keys) == (0, 0, 20), order
