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

WHOLE_WITHIN_S = 120  # after the heal: the losing side restarts, and the cluster is one again
STABLE_S = 10.0  # whole for this long, it is whole for good (the losers restart within seconds)
NOTICED_WITHIN_S = 120  # a cut is noticed after net_ticktime, 60 s at the most here
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

    def partition(self, node: str, *, hold: float = 0.0, both_sides: bool = True) -> float:
        """Cut `node` off, until the other nodes have noticed (and, `both_sides`, the node
        itself) and at least `hold` seconds have passed; then put it back. The seconds from the
        heal until the cluster was whole again. Healed before the node noticed, the partition
        is the other side's alone: the case `pause_minority` left split."""
        since = datetime.datetime.now(datetime.UTC).isoformat()  # as Docker's logs count time
        _docker("network", "disconnect", self.network, self.container(node))
        cut_at = time.monotonic()
        self.wait_until_noticed(node, timeout=max(hold, NOTICED_WITHIN_S))
        if both_sides:

            def noticed() -> bool:
                logs = self.compose("logs", "--no-color", "--since", since, node, check=False)
                return GAVE_UP in logs

            wait_for(noticed, NOTICED_WITHIN_S, f"{node}, cut off, to notice on its side")
        time.sleep(max(0.0, cut_at + hold - time.monotonic()))  # the fault's length, not a wait
        _docker("network", "connect", "--alias", node, self.network, self.container(node))
        return self.wait_until_whole()

    def running(self, node: str) -> set[str] | None:
        """The nodes `node` sees running (host names), or None while it does not answer."""
        try:
            output = self.compose.rabbitmqctl(node, "cluster_status", "--formatter", "json")
            status = json.loads(output)
        except (DemoFailed, ValueError, subprocess.TimeoutExpired):
            return None
        if any(status.get("partitions", {}).values()):
            return set()  # a partition on record: the cluster is not one, whoever runs
        return {name.split("@")[1] for name in status.get("running_nodes", [])}

    def wait_until_noticed(self, cut: str, timeout: float = 120) -> None:
        """Until every other node answers and no longer sees `cut` running."""

        def noticed(node: str) -> bool:
            seen = self.running(node)
            return seen is not None and node in seen and cut not in seen

        others = [node for node in self.nodes if node != cut]
        wait_for(
            lambda: all(noticed(node) for node in others),
            timeout,
            f"the other nodes to notice that {cut} is cut off",
        )

    def whole(self) -> bool:
        """Every node answers, sees every node running, and has no partition on record."""
        return all(self.running(node) == set(self.nodes) for node in self.nodes)

    def wait_until_whole(self, timeout: float = WHOLE_WITHIN_S) -> float:
        """Until the cluster is one again and stays so for STABLE_S (the nodes may look whole
        for a moment after the heal, before they find the partition and the losers restart);
        the seconds until it was first whole for good."""
        started, whole_since = time.monotonic(), None

        def whole_for_good() -> bool:
            nonlocal whole_since
            if not self.whole():
                whole_since = None
                return False
            whole_since = whole_since or time.monotonic()
            return time.monotonic() - whole_since >= STABLE_S

        what = "the cluster to be whole again (3 running, no partitions)"
        wait_for(whole_for_good, timeout, what)
        return (whole_since or time.monotonic()) - started


def _docker(*args: str) -> None:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise DemoFailed(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
