"""Three private RabbitMQ nodes that form one cluster, for faults no single node can show.

`PrivateCluster` is three `PrivateBroker` nodes on this machine with one Erlang cookie between
them, which cluster by themselves at their first start: classic-config peer discovery lists all
three names, as the compose cluster does (`rabbitmq/20-cluster.conf`), and quorum queue
leaders are spread over the nodes (`queue_leader_locator = balanced`). A test may kill, stop and
restart any node; `restore()` brings every node back and waits until the cluster is whole again,
so that one cluster can serve several scenarios, each in a virtual host of its own
(`ClusterVhost`).

What it takes (learnt here, RabbitMQ 3.10):
- Nodes started at the same moment with classic-config discovery cluster reliably: discovery
  takes a lock, so one node goes first and the others join it.
- A restarted node answers AMQP before its quorum queue replicas have caught up with the
  others; `rabbitmq-upgrade await_online_quorum_plus_one` on the next node to go down waits
  until every quorum queue could lose that node and keep a majority (a rolling restart's rule).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Sequence
from pathlib import Path

from harness.broker import Vhost, unique_name, with_vhost
from harness.private_broker import PrivateBroker, new_node_name
from harness.processes import wait_for

SIZE = 3
READY_TIMEOUT_S = 90  # three nodes booting at once on two cores: 15-30 s here
CLUSTERED_TIMEOUT_S = 60  # for `cluster_status` to list every node running once all answer
QUEUE_COLUMNS = ("name", "leader", "members", "online")


def cluster_config(names: Sequence[str]) -> list[str]:
    """The rabbitmq.conf lines every node of the cluster shares."""
    return [
        "cluster_formation.peer_discovery_backend = rabbit_peer_discovery_classic_config",
        *(
            f"cluster_formation.classic_config.nodes.{number} = {name}@localhost"
            for number, name in enumerate(names, start=1)
        ),
        # Quorum queue leaders on different nodes, not all on the declaring client's node.
        "queue_leader_locator = balanced",
        # After a partition, the losing side restarts and rejoins by itself.
        "cluster_partition_handling = autoheal",
    ]


class PrivateCluster:
    """Three private nodes clustered at start; call `destroy()` when done, whatever happens."""

    def __init__(self, base_dir: Path, size: int = SIZE) -> None:
        names = [new_node_name() for _ in range(size)]
        cookie = secrets.token_hex(20).upper()
        config = cluster_config(names)
        self.nodes = [
            PrivateBroker(base_dir, short_name=name, cookie=cookie, config=config) for name in names
        ]

    def __repr__(self) -> str:
        return f"PrivateCluster({', '.join(node.node for node in self.nodes)})"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start every node at once and wait until all three run as one cluster."""
        for node in self.nodes:
            node.start()
        self.wait_until_whole()

    def wait_until_whole(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until every node takes AMQP connections and the first sees all running."""
        for node in self.nodes:
            node.wait_until_ready(timeout)
        expected = sorted(node.node for node in self.nodes)
        wait_for(
            lambda: sorted(self.running_nodes(self.nodes[0])) == expected,
            CLUSTERED_TIMEOUT_S,
            f"{self.nodes[0].node} to see all of {expected} running",
            interval=0.5,
        )

    def restore(self) -> None:
        """Start every node that is down, and wait until the cluster is whole again."""
        down = [node for node in self.nodes if not node.running]
        for node in down:
            node.start()
        if down:
            self.wait_until_whole()

    def destroy(self, keep_logs_in: Path | None = None) -> None:
        errors = []
        for node in self.nodes:
            try:
                node.destroy(keep_logs_in)
            except Exception as error:  # destroy the others all the same
                errors.append(error)
        if errors:
            raise errors[0]

    # -- inspection ----------------------------------------------------------------------------

    def running(self) -> list[PrivateBroker]:
        return [node for node in self.nodes if node.running]

    def any_running(self) -> PrivateBroker:
        running = self.running()
        assert running, f"no node of {self} is running"
        return running[0]

    def node_named(self, name: str) -> PrivateBroker:
        """The node called `name` (as RabbitMQ names it: `rhtest-...@localhost`)."""
        for node in self.nodes:
            if node.node == name:
                return node
        raise KeyError(f"{name} is not a node of {self}")

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """rabbitmqctl against a running node: for cluster-wide commands (vhosts, users)."""
        return self.any_running().rabbitmqctl(*args, timeout=timeout)

    def running_nodes(self, node: PrivateBroker) -> list[str]:
        """The nodes `node` sees running in its cluster (empty if it does not answer)."""
        try:
            status = json.loads(node.rabbitmqctl("cluster_status", "--formatter", "json"))
        except (AssertionError, ValueError):
            return []
        return list(status.get("running_nodes", []))

    def queues(self, vhost: str) -> dict[str, dict]:
        """Each queue of `vhost` with its leader, members and online members (rabbitmqctl)."""
        output = self.rabbitmqctl("list_queues", "-p", vhost, *QUEUE_COLUMNS, "--formatter", "json")
        return {queue["name"]: queue for queue in json.loads(output)}

    def leader_of(self, vhost: str, queue: str) -> PrivateBroker:
        return self.node_named(self.queues(vhost)[queue]["leader"])

    def await_quorum_plus_one(self, node: PrivateBroker, timeout: float = 60) -> None:
        """Wait until every quorum queue keeps a majority without `node` (rolling restarts)."""
        node.cli(
            "rabbitmq-upgrade", "await_online_quorum_plus_one", "-t", f"{timeout:g}",
            timeout=timeout + 10,
        )  # fmt: skip


class ClusterVhost(Vhost):
    """A virtual host of its own on the cluster, with `Vhost`'s helpers (depth, drain, ...).

    `url` points at a node that runs at the time it is read; `urls` names them all.
    """

    def __init__(self, cluster: PrivateCluster, label: str = "cluster") -> None:
        # No super().__init__: it would make the vhost on the shared broker.
        self.cluster = cluster
        self.name = unique_name(label)
        cluster.rabbitmqctl("add_vhost", self.name)
        cluster.rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    @property
    def url(self) -> str:  # type: ignore[override]
        return with_vhost(self.cluster.any_running().url, self.name)

    @property
    def node_urls(self) -> list[str]:
        return [with_vhost(node.url, self.name) for node in self.cluster.nodes]

    @property
    def urls(self) -> str:
        """AMQP_URL naming every node, in node order: each process shuffles it for itself."""
        return ",".join(self.node_urls)

    def delete(self) -> None:
        with contextlib.suppress(AssertionError):
            self.cluster.rabbitmqctl("delete_vhost", self.name, timeout=120)
