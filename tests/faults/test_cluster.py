"""The pipeline on a three-node cluster that loses nodes: killed, restarted in turn, outvoted.

One `PrivateCluster` (three private RabbitMQ nodes clustered at start, quorum queue leaders
spread over them) serves every test here; each test gets a virtual host of its own on it, and
the cluster is made whole again before and after each. The `vhost` fixture is overridden here,
so conftest's `start` points every process at the cluster; each process is given every node's
URL (AMQP_URL with three URLs) and picks its own order.

Every scenario moves 2,000 messages through two replicas of each stage, 10 workers each, with a
little work per message and `first` publishing at a set rate, so that the fault lands while
messages are in flight at every stage; then `PipelineRun.finish` checks that each completed
exactly once by id, that no queue holds anything and that no process crashed. The consumers run
under `harness.delivery_probe`, so each row also says how many deliveries a message took at
most: a node's loss hands back what its clients held, and each return counts against
`DELIVERY_LIMIT` (the quorum queues' `x-delivery-limit`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from common.topology import PIPELINE_QUEUES, STAGES
from harness.pipeline import PipelineRun
from harness.private_broker import BrokerUnavailable, PrivateBroker, reap_orphans
from harness.private_cluster import ClusterVhost, PrivateCluster
from harness.processes import Proc, wait_for, wait_for_each
from tests.faults.test_broker_faults import COUNT, PIPELINE_ENV, PUBLISH_RATE
from tests.unit.test_watch import CLOSED, rows, run_watch

REPLICAS = 2
ROLLING_PUBLISH_RATE = 30  # about 67 s of publishing: the three restarts (each 7 s on a quiet
# machine, twice that on a busy one) all land mid-run
NO_MAJORITY_FOR = 10.0  # seconds two of the three nodes stay down
MOVE_WITHIN = 10.0  # CONNECT_TIMEOUT of the node-loss scenario: move on within this or fail
STALL_SETTLES = 2.0  # seconds for deliveries already on the wire when the majority went

# What a process logs when it gives up on a message: the run cannot complete any more.
GIVEN_UP = ('"message": "dead-lettered"',)
FINISH_TIMEOUT = 60  # seconds for every message to complete once the fault is over (~10 s here)
CONNECTED = "connected"
LOST = "connection lost, reconnecting"
REFUSED = "the broker refused publishes for now (nack); publishing them again"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """Three private nodes clustered once for the whole module; destroyed at its end."""
    reap_orphans()
    base = tmp_path_factory.mktemp("cluster")
    try:
        cluster = PrivateCluster(base)
    except BrokerUnavailable as error:
        pytest.skip(str(error))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy(keep_logs_in=base)


@pytest.fixture
def vhost(cluster: PrivateCluster) -> Iterator[ClusterVhost]:
    """Overrides conftest's: a vhost of the test's own on a whole cluster."""
    cluster.restore()
    vhost = ClusterVhost(cluster)
    yield vhost
    cluster.restore()  # deleting quorum queues needs a majority of their members
    vhost.delete()


def pipeline(start, vhost: ClusterVhost, **env: object) -> PipelineRun:
    env = {"AMQP_URL": vhost.urls, **PIPELINE_ENV, **env}
    return PipelineRun(start, vhost, COUNT, env=env, probe=True)


def start_paced(run: PipelineRun, rate: float = PUBLISH_RATE) -> None:
    """last, two replicas of each stage; once all consume, `first` publishing at `rate`."""
    run.start_last()
    for queue in STAGES:
        for _ in range(REPLICAS):
            run.start_service(queue)
    run.wait_for_consumers(60)
    run.start_first(PUBLISH_RATE=rate)


def node_of(proc: Proc, cluster: PrivateCluster) -> PrivateBroker | None:
    """The node `proc` is connected to now, from its last "connected" record."""
    connected = proc.messages(CONNECTED)
    if not connected:
        return None
    port = urlsplit(connected[-1]["url"]).port
    return next(node for node in cluster.nodes if node.port == port)


def finish(run: PipelineRun, scenario: str, notes: str) -> None:
    """`run.finish`, once every message completed; failing at once if one never can: a process
    dead-lettered a healthy message, or `first` gave up on one."""

    def completed() -> bool:
        for proc in run.processes():
            text = proc.stdout_path.read_text(errors="replace")
            for record in GIVEN_UP:
                if record in text:
                    line = text[text.index(record) :].split("\n", 1)[0]
                    raise AssertionError(f"{proc.name} gave up on a message: {line}")
        for first in run.firsts:
            assert first.poll() in (None, 0), f"first exited {first.poll()}:\n{first.tail()}"
        return run.distinct_completed() >= len(run.expected_seqs())

    try:
        wait_for(completed, FINISH_TIMEOUT, "every message to complete", interval=1)
    except AssertionError as error:
        refusing = [proc.name for proc in run.processes() if proc.messages(REFUSED)]
        raise AssertionError(
            f"{error}: {run.distinct_completed()} completed; {nacked(run)} publishes refused "
            f"(nack), by {refusing}"
        ) from None
    run.finish(scenario, notes=notes)


def deliveries_note(run: PipelineRun) -> str:
    most = run.most_deliveries()
    worst = max(most.values(), default=1)
    per_queue = ", ".join(f"{queue} {most.get(queue, 1)}" for queue in PIPELINE_QUEUES)
    return f"most deliveries of one message: {worst} ({per_queue}); publishes nacked: {nacked(run)}"


def nacked(run: PipelineRun) -> int:
    """Publishes the broker refused (and the processes sent again after a pause)."""
    return sum(record["refused"] for proc in run.processes() for record in proc.messages(REFUSED))


def test_watch_shows_leaders_and_online_members(cluster: PrivateCluster, vhost) -> None:
    vhost.declare(*PIPELINE_QUEUES, "dead_letter")
    leaders = {cluster.queues(vhost.name)[queue]["leader"] for queue in PIPELINE_QUEUES}
    assert len(leaders) > 1, f"quorum queue leaders not spread over the nodes: {leaders}"
    *running, down = cluster.nodes
    down.kill()
    wait_for(
        lambda: all(q["leader"] != down.node for q in cluster.queues(vhost.name).values()),
        30,
        f"new leaders for the queues {down.node} led",
    )
    result = run_watch(
        "--count",
        "1",
        AMQP_URL=vhost.url,
        MANAGEMENT_URL=CLOSED,
        RABBITMQCTL=running[0].rabbitmqctl_command(),
    )
    assert result.returncode == 0, result.stderr
    queues = cluster.queues(vhost.name)
    for queue in PIPELINE_QUEUES:
        assert rows(result.stdout, queue)[0][-2:] == ["2/3", queues[queue]["leader"]]


def test_sigkill_the_node_that_leads_service_b(start, vhost, cluster: PrivateCluster) -> None:
    run = pipeline(start, vhost)
    start_paced(run)
    run.wait_until_completed(0.2, timeout=60)
    leader = cluster.leader_of(vhost.name, "service_b")
    clients = [proc for proc in run.processes() if node_of(proc, cluster) is leader]
    leader.kill()
    wait_for(
        lambda: cluster.leader_of(vhost.name, "service_b") is not leader,
        30,
        "service_b to elect a new leader",
    )
    finish(
        run,
        "cluster: SIGKILL the node that leads service_b",
        notes=f"{len(clients)} of {len(run.processes())} processes were connected to it; "
        + deliveries_note(run),
    )


def test_rolling_restart(start, vhost, cluster: PrivateCluster) -> None:
    run = pipeline(start, vhost)
    start_paced(run, ROLLING_PUBLISH_RATE)
    run.wait_until_completed(0.05, timeout=60)
    restarts = []
    for node in cluster.nodes:
        assert run.distinct_completed() < COUNT, "the run ended before the last restart"
        cluster.await_quorum_plus_one(node)  # a rolling restart's rule: never below a majority
        began = time.monotonic()
        node.stop()
        node.start()
        node.wait_until_ready()
        restarts.append(time.monotonic() - began)
    finish(
        run,
        "cluster: rolling restart, each node stopped and started in turn",
        notes=f"each node down {min(restarts):.0f}-{max(restarts):.0f} s; " + deliveries_note(run),
    )


def test_no_majority_stalls_then_completes(start, vhost, cluster: PrivateCluster) -> None:
    run = pipeline(start, vhost)
    start_paced(run)
    run.wait_until_completed(0.2, timeout=60)
    survivor, *lost = cluster.nodes
    for node in lost:
        node.kill()
    down_since = time.monotonic()
    time.sleep(STALL_SETTLES)  # the outage is the scenario
    stalled_at = run.distinct_completed()
    time.sleep(max(0.0, down_since + NO_MAJORITY_FOR - time.monotonic()))
    assert run.distinct_completed() == stalled_at, "messages completed without a majority"
    for proc in run.processes():
        assert proc.running, f"{proc.name} exited without a majority:\n{proc.tail()}"
        assert not proc.errors(), proc.tail()
    assert survivor.running
    cluster.restore()
    finish(
        run,
        "cluster: no majority, two of three nodes down for 10 s",
        notes=f"{stalled_at} of {COUNT} completed when it stalled; " + deliveries_note(run),
    )


def test_a_process_whose_node_dies_moves_to_another(start, vhost, cluster) -> None:
    run = pipeline(start, vhost, CONNECT_TIMEOUT=MOVE_WITHIN)
    start_paced(run)
    run.wait_until_completed(0.2, timeout=60)
    by_node = Counter(node_of(proc, cluster) for proc in run.processes() if proc.running)
    [(victim, _)] = by_node.most_common(1)
    movers = [proc for proc in run.processes() if node_of(proc, cluster) is victim]
    before = {proc: len(proc.messages(CONNECTED)) for proc in movers}
    victim.kill()
    killed_at = time.monotonic()
    wait_for_each(
        movers,
        lambda proc: len(proc.messages(CONNECTED)) > before[proc],
        MOVE_WITHIN,
        f"the {len(movers)} processes on {victim.node} to connect to another node",
    )
    moved_in = time.monotonic() - killed_at
    for proc in movers:
        assert proc.messages(LOST), proc.tail()
        assert node_of(proc, cluster) not in (None, victim), proc.tail()
    finish(
        run,
        "cluster: a process whose node dies moves to another node",
        notes=f"{len(movers)} processes moved within {moved_in:.2f} s "
        f"(CONNECT_TIMEOUT {MOVE_WITHIN:g} s); " + deliveries_note(run),
    )
