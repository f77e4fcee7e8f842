"""One invocation of `python -m bench`: every run it made, against its time budget."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.contenders import Contender
from bench.runs import Limits, RunResult, RunSpec, run_plan
from harness.broker import Vhost
from harness.private_cluster import ClusterVhost, PrivateCluster
from harness.tls import NodeVhost, TlsNode

if TYPE_CHECKING:
    from bench.breakdown import Load


@dataclass
class Session:
    """Everything one invocation ran, and the clock it runs against."""

    args: argparse.Namespace
    runs_dir: Path
    log: Callable[[str], None] = print  # where each run's one-line result goes
    started: float = field(default_factory=time.monotonic)
    main: dict[str, list[RunResult]] = field(default_factory=dict)
    steady: dict[str, list[RunResult]] = field(default_factory=dict)
    steady_rate: float = 0.0
    scaling: dict[int, list[RunResult]] = field(default_factory=dict)
    profile: RunResult | None = None
    breakdown: list[Load] = field(default_factory=list)  # bench.breakdown's, once run
    cluster: PrivateCluster | None = None  # started for the first contender that needs it
    node: TlsNode | None = None  # the same

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        """Stop what the session started (the cluster and the node, if any)."""
        for private in (self.cluster, self.node):
            if private is not None:
                private.destroy(keep_logs_in=self.runs_dir)
        self.cluster = self.node = None

    def _vhost(self, contender: Contender, label: str) -> Vhost:
        if contender.broker == "cluster":
            if self.cluster is None:
                self.cluster = PrivateCluster(self.runs_dir / "cluster")
                self.log("starting a three-node cluster of private RabbitMQ nodes")
                self.cluster.start()
            return ClusterVhost(self.cluster, label=f"bench-{label}")
        if contender.broker in ("node", "node-tls"):
            if self.node is None:
                self.node = TlsNode(self.runs_dir / "node")
                self.log("starting a private RabbitMQ node with a TLS listener")
                self.node.start()
            return NodeVhost(self.node, f"bench-{label}", tls=contender.broker == "node-tls")
        return Vhost(label=f"bench-{label}")

    def run(self, contender: Contender, label: str, **spec: object) -> RunResult:
        messages = int(spec.pop("messages", self.args.messages))
        forced = spec.pop("queue_type", None)
        problem = contender.check()
        if problem:
            return RunResult(contender.name, messages, status=problem)
        if self.elapsed() > self.args.budget:
            return RunResult(
                contender.name, messages, status=f"skipped: over the {self.args.budget:g}s budget"
            )
        queue_type = forced or contender.queue_type or self.args.queue_type
        logdir = self.runs_dir / label
        run_spec = RunSpec(
            label, messages, logdir, queue_type=queue_type, env=contender.env, **spec
        )
        limits = Limits(stall=self.args.stall, run=self.args.run_deadline)
        try:
            vhost = self._vhost(contender, label)
        except Exception as error:
            return RunResult(contender.name, messages, status=f"failed: no vhost: {error}")
        result = run_plan(contender.plan(vhost, run_spec), logdir, limits, log=self.log)
        result.contender = contender.name
        if result.status.startswith("ok") and not spec.get("profile"):
            run_spec.results.unlink(missing_ok=True)  # large; the figures are in the result
        return result
