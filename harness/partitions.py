"""Network partitions of the compose cluster, made with Docker's own network commands.

A node's container is taken off the project's network (`docker network disconnect`): nothing
reaches it or leaves it any more, neither the other nodes' traffic nor its clients', which is
what a switch or a cable failing does to a host. Putting it back (`docker network connect`, with
its service name as its DNS alias, as Compose gives it) heals the partition. The nodes notice a
cut after net_ticktime (the tests lower it: RABBITMQ_NET_TICKTIME); with
`cluster_partition_handling = autoheal` (rabbitmq/20-cluster.conf) the side that loses restarts
and rejoins by itself once the network is back.

`rabbitmqctl cluster_status` on a node of the majority says what the cluster looks like: which
nodes run, and which partitions a node has seen.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import time
from dataclasses import dataclass

from harness.compose_demo import Compose, DemoFailed, wait_for

WHOLE_WITHIN_S = 120  # after the heal: the paused node starts again and the cluster is one
# What a node logs (at error) once it has given a peer up: its own side of the partition. Its
# CLI cannot say: cut off, the container cannot even resolve its own node name.
GAVE_UP = "not responding"


@dataclass
class Partitions:
    """Cuts and heals the nodes of `compose` (a project of the cluster files), among `nodes`."""

    compose: Compose
    nodes: tuple[str, ...]

    @property
    def network(self) -> str:
        return f"{self.compose.project}_default"

    def container(self, service: str) -> str:
        [container] = self.compose("ps", "-q", service).split()
        return container

    def cut(self, node: str) -> str:
        """Take `node` off the network; when, for `paused` (an ISO time, as Docker's logs)."""
        since = datetime.datetime.now(datetime.UTC).isoformat()
        _docker("network", "disconnect", self.network, self.container(node))
        return since

    def noticed_by(self, node: str, since: str) -> bool:
        """`node` has given up a peer since `since`: the partition has begun on its side too."""
        return GAVE_UP in self.compose("logs", "--no-color", "--since", since, node, check=False)

    def partition(self, node: str, *, both_sides: bool = True) -> float:
        """Cut `node` off until the other nodes have noticed (and, `both_sides`, the node
        itself), then put it back; the seconds until the cluster was whole again after the
        heal. Healed before the node noticed, the partition is one side's alone: the case
        `pause_minority` leaves split."""
        since = self.cut(node)
        self.wait_until_noticed(node)
        if both_sides:
            wait_for(lambda: self.noticed_by(node, since), 120, f"{node}, cut off, to notice")
        self.heal(node)
        return self.wait_until_whole()

    def heal(self, node: str) -> float:
        _docker("network", "connect", "--alias", node, self.network, self.container(node))
        return time.monotonic()

    def status(self, node: str) -> dict:
        """`rabbitmqctl cluster_status` of `node`, or {} while it does not answer."""
        try:
            output = self.compose.rabbitmqctl(node, "cluster_status", "--formatter", "json")
            return json.loads(output)
        except (DemoFailed, ValueError, subprocess.TimeoutExpired):
            return {}

    def running(self, node: str) -> set[str]:
        """The nodes `node` sees running (host names)."""
        return {name.split("@")[1] for name in self.status(node).get("running_nodes", [])}

    def wait_until_noticed(self, cut: str, timeout: float = 120) -> None:
        """Until every other node sees `cut` gone: the partition has begun for the cluster."""
        others = [node for node in self.nodes if node != cut]
        wait_for(
            lambda: all(cut not in self.running(node) for node in others),
            timeout,
            f"the other nodes to notice that {cut} is cut off",
        )

    def whole(self) -> bool:
        """Every node runs, sees every other, and none has a partition on record."""
        for node in self.nodes:
            status = self.status(node)
            running = {name.split("@")[1] for name in status.get("running_nodes", [])}
            if running != set(self.nodes) or any(status.get("partitions", {}).values()):
                return False
        return True

    def wait_until_whole(self, timeout: float = WHOLE_WITHIN_S) -> float:
        """Until the cluster is one again; how long that took."""
        started = time.monotonic()
        wait_for(self.whole, timeout, "the cluster to be whole again (3 running, no partitions)")
        return time.monotonic() - started


def _docker(*args: str) -> None:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise DemoFailed(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
