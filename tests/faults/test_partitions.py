"""Network partitions of the compose cluster, for real in Docker (`make test-docker`; skipped,
saying so, where Docker does not answer).

Each scenario starts the cluster files afresh (three nodes, the stages scaled as in
`make cluster-demo`), cuts a node off the network with `docker network disconnect` while
messages flow, and puts it back. The clients of the node cut off move to the others; with
`cluster_partition_handling = autoheal`, once healed, the losing side restarts and rejoins by
itself. Each must
end with every message completed once in `last`, `first` exited 0, no app container died or
restarted, every queue empty, and the cluster whole again (three running nodes, no partitions)
within `harness.partitions.WHOLE_WITHIN_S` of the heal, without anyone restarting anything.

The nodes notice a cut after net_ticktime: 60 s in the cluster file, 15 s here
(RABBITMQ_NET_TICKTIME), so that each scenario takes a minute or two rather than five. The apps'
heartbeat is the cluster file's own (15 s): a client of the cut node notices within two.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from harness import compose_demo
from harness.cluster_demo import FILES, NODES, scale_options
from harness.compose_demo import Compose, wait_for, wait_for_completions
from harness.docker_broker import docker_available
from harness.partitions import WHOLE_WITHIN_S, Partitions
from harness.pipeline import Row, report
from tests.integration.test_observability_compose import free_port

pytestmark = pytest.mark.docker

TICKTIME_S = 15  # 10 would do on a quiet machine; a loaded one can stall a node that long
PORTS = ("RABBITMQ_AMQPS_PORT", "STORE_PORT", "RABBITMQ_MANAGEMENT_PORT")
MANAGEMENT = ("RABBITMQ_2_MANAGEMENT_PORT", "RABBITMQ_3_MANAGEMENT_PORT")


@contextmanager
def cluster(label: str, messages: int, rate: float) -> Iterator[Partitions]:
    """The cluster files up afresh, `first` publishing `messages` at `rate` per second."""
    if not docker_available():
        pytest.skip("no Docker engine answers: the partition scenarios run in Docker")
    env = {name: str(free_port()) for name in (*PORTS, *MANAGEMENT)} | {
        "NUMBER_OF_MESSAGES": str(messages),
        "PUBLISH_RATE": f"{rate:g}",
        "RABBITMQ_NET_TICKTIME": str(TICKTIME_S),
    }
    compose = Compose(f"rhtest-partition-{label}-{secrets.token_hex(3)}", FILES, env)
    try:
        compose.fresh_up(*scale_options())
        yield Partitions(compose, NODES)
    finally:
        compose("down", "--volumes", "--remove-orphans", timeout=180, check=False)


def connections(compose: Compose, service: str) -> list[str]:
    """The nodes `service`'s (one) container connected to, in turn, from its `connected`
    lines."""
    urls = [r["url"] for _, r in compose.records(service) if r.get("message") == "connected"]
    return [url.split("@")[1].split(":")[0] for url in urls]


def finish(
    partitions: Partitions, scenario: str, messages: int, started: float, notes: str
) -> None:
    """Every message completed once, every check of the demo passed, and the cluster still
    whole: the row for docs/reliability.md."""
    compose = partitions.compose
    seen = wait_for_completions(compose, messages, f"all {messages} messages to complete")
    compose_demo.check_outcome(compose, messages, seen)
    assert partitions.whole(), "the cluster split again"
    duplicates = sum(1 for _, r in compose.records("last") if r.get("message") == "duplicate")
    seconds = round(time.monotonic() - started, 1)
    report(Row(scenario, messages, 0, duplicates, 0, 0, seconds, notes))


def test_the_node_leading_service_b_cut_off_then_healed() -> None:
    messages = 400
    with cluster("leader", messages, rate=0) as partitions:
        compose, started = partitions.compose, time.monotonic()
        wait_for_completions(compose, messages * 0.2, "a fifth of the messages to complete")
        leader = compose.leader_of("service_b")
        whole = partitions.partition(leader, both_sides=False)  # healed as soon as noticed
        finish(
            partitions,
            "partition: the node leading service_b cut off, then healed",
            messages,
            started,
            f"net_ticktime {TICKTIME_S} s; healed once the others noticed; the cluster whole "
            f"{whole:.0f} s after the heal",
        )


def test_a_node_cut_off_while_first_publishes_to_it() -> None:
    messages = 300
    with cluster("first", messages, rate=10) as partitions:
        compose, started = partitions.compose, time.monotonic()
        node = wait_for(lambda: connections(compose, "first"), 60, "first to connect")[0]
        whole = partitions.partition(node)
        assert len(connections(compose, "first")) >= 2, "first never lost its node"
        finish(  # first exited 0: every message it published confirmed, whatever its node
            partitions,
            "partition: the node first publishes to cut off, then healed",
            messages,
            started,
            f"first connected to {' then '.join(connections(compose, 'first'))}; the cluster "
            f"whole {whole:.0f} s after the heal",
        )


def test_a_flapping_partition_heals_each_time() -> None:
    messages, rate, flaps = 300, 3, 3
    with cluster("flapping", messages, rate=rate) as partitions:
        started = time.monotonic()
        wholes = []
        for flap in range(flaps):
            node = NODES[flap % len(NODES)]
            wholes.append(partitions.partition(node))
        finish(
            partitions,
            f"partition: flapping, a node cut off and healed {flaps} times in turn",
            messages,
            started,
            f"the cluster whole {', '.join(f'{w:.0f}' for w in wholes)} s after each heal "
            f"(bound {WHOLE_WITHIN_S} s)",
        )
