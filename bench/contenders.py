"""The contenders, in the order they run and appear in the table.

Each one names the module whose processes it runs, the packages it needs (checked first, so
that a framework that is not installed gives its row a reason instead of failing the whole
benchmark) and how a run of it is planned.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from bench import ceiling, project
from bench.runs import Plan, RunSpec, standard_plan
from common.topology import STAGES
from harness.broker import Vhost


@dataclass(frozen=True)
class Contender:
    name: str
    title: str
    module: str
    plan: Callable[[Vhost, RunSpec], Plan]
    notes: str
    packages: tuple[str, ...] = ()
    queue_type: str | None = None  # forced queue type, if not the run's
    env: Mapping[str, str] = field(default_factory=dict)  # settings of its own (this project's)
    programs: tuple[str, ...] = ()  # other programs it runs, found on PATH
    # Where it runs: the shared broker; the bench's three-node PrivateCluster; or the bench's
    # private node with a TLS listener (`harness.tls.TlsNode`), dialled in clear or over TLS.
    broker: str = "shared"  # or "cluster", "node", "node-tls"

    def check(self) -> str | None:
        """None if the contender's packages are installed here, or which are not."""
        missing = [name for name in self.packages if version(name) is None]
        if missing:
            return f"not installed: {', '.join(missing)} (make bench installs them)"
        absent = [name for name in self.programs if shutil.which(name) is None]
        if absent:
            return f"not on PATH: {', '.join(absent)}"
        if importlib.util.find_spec(self.module) is None:
            return f"no module {self.module}"
        return None


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _standard(module: str, stages: tuple[str, ...] = STAGES) -> Callable[[Vhost, RunSpec], Plan]:
    return partial(standard_plan, module, stages=stages)


CONTENDERS = {
    c.name: c
    for c in (
        Contender(
            "project",
            "this project",
            "bench.project",
            project.plan,
            "the real `first`, `service` x3 (`WORKERS=10`) and `last` processes: streaming "
            "publisher confirms on every hop, each input acked after the broker confirmed its "
            "output, message validation and dead-lettering; `PREFETCH` 100 (its default; the "
            "compose demo sets 20 for its slow random work); `LOG_LEVEL=WARNING`",
            ("pika",),
        ),
        Contender(
            "project-store",
            "this project, last with its store",
            "bench.project",
            project.plan_with_store,
            "as above, with `last` writing each record to Redis (`SET NX GET`, several "
            "records per round trip) before its ack; a `redis-server` of the run's own with "
            "the compose file's durability settings (`appendonly yes`, `appendfsync always`: "
            "an fsync before each reply), its CPU counted with the contender's",
            ("pika", "redis"),
            programs=("redis-server",),
        ),
        Contender(
            "project-metrics",
            "this project, metrics on",
            "bench.project",
            project.plan_with_metrics,
            "as *this project*, every process counting its Prometheus metrics and serving them "
            "on a `METRICS_PORT` of its own, as the compose file runs them (nothing scrapes "
            "them during the run: a scrape every 15 s costs a process one HTTP reply)",
            ("pika", "prometheus_client"),
        ),
        Contender(
            "project-traces",
            "this project, traces on",
            "bench.project",
            project.plan_with_traces,
            "as *this project*, every process tracing each message (OpenTelemetry, semconv "
            "1.27: a `send` and a `process` span per hop, W3C context in the headers) and "
            "exporting the spans over OTLP/HTTP in batches to a receiver of the run's own "
            "(`harness.otlp_receiver`, which decodes them and keeps nothing)",
            ("pika", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"),
        ),
        Contender(
            "project-classic",
            "this project, classic queues",
            "bench.project",
            project.plan,
            "as above with `QUEUE_TYPE=classic` (durable classic queues), for comparison with "
            "contenders that cannot declare quorum queues",
            ("pika",),
            queue_type="classic",
        ),
        Contender(
            "project-cluster",
            "this project, three-node cluster",
            "bench.project",
            project.plan,
            "as *this project*, on a cluster of three RabbitMQ nodes instead of one: private "
            "nodes on this machine (`harness.private_cluster`, the same settings as the compose "
            "cluster demo), every quorum queue replicated on all three, leaders spread over "
            "them, each process given all three nodes in `AMQP_URL`. A message is confirmed once "
            "two of three nodes hold it; on one machine the nodes share its two cores, so this "
            "row shows what replication costs in CPU and latency, not in network",
            ("pika",),
            broker="cluster",
        ),
        Contender(
            "project-node",
            "this project, a node of its own",
            "bench.project",
            project.plan,
            "as *this project*, on a private RabbitMQ node of the bench's own (the same "
            "RabbitMQ, its default settings, no plugins), which also listens for TLS: the "
            "row to hold the next one against",
            ("pika",),
            broker="node",
        ),
        Contender(
            "project-tls",
            "this project, TLS",
            "bench.project",
            project.plan,
            "as the row above, on the same node, every connection over TLS (`amqps://`, TLS 1.3, "
            "the node's certificate verified against the run's CA and its name checked, as in "
            "compose): what encryption costs",
            ("pika",),
            broker="node-tls",
        ),
        Contender(
            "project-keyed",
            "this project, keyed order",
            "bench.project",
            project.plan,
            "as `project` with `ORDERING=keyed` and `KEYS=100`: each stage's input is 6 "
            "partition queues with a single active consumer, one message of a key in work at a "
            "time: what keeping per-key order costs",
            ("pika",),
            env={"ORDERING": "keyed", "KEYS": "100", "PARTITIONS": "6"},
        ),
        Contender(
            "ceiling",
            "broker ceiling (1 hop)",
            "bench.ceiling",
            ceiling.plan,
            "one hop, no pipeline logic: a bare pika `SelectConnection` publisher streaming "
            "confirms (1,000 in flight, as `first`) into one queue, a bare `SelectConnection` "
            "consumer acking each message (prefetch 100, as the project). What one publisher "
            "and one consumer process get through this broker; a message of the pipeline "
            "makes 4 such hops",
            ("pika",),
        ),
        Contender(
            "seed",
            "seed design (no confirms)",
            "bench.seed",
            _standard("bench.seed"),
            "the seed's original design: one pika `BlockingConnection` consumer per stage "
            "process, republish *without* publisher confirms, then ack; publisher without "
            "confirms; prefetch 100",
            ("pika",),
        ),
        Contender(
            "faststream",
            "FastStream",
            "bench.fs_pipeline",
            _standard("bench.fs_pipeline"),
            "a FastStream app per stage process: `@broker.subscriber` + `@publisher` "
            "(`persist=True`; publisher confirms are FastStream's default), ack after the "
            "handler returns; `logger=None` (no log line per message); prefetch 100; publisher "
            "keeps 1,000 publishes awaiting confirms",
            ("faststream", "aio-pika", "aiormq"),
        ),
        Contender(
            "dramatiq",
            "Dramatiq",
            "bench.dramatiq_pipeline",
            _standard("bench.dramatiq_pipeline"),
            "`dramatiq.pipeline` of 3 actors + a sink actor, one worker process per queue "
            "(`--processes 1 --threads 10`); `confirm_delivery=True`; ack after processing; "
            "quorum via a subclass of `RabbitmqBroker` (no option for it); Dramatiq's prefetch "
            "(2 x threads); publisher: 8 threads, each enqueue waits for its confirm",
            ("dramatiq", "pika"),
        ),
        Contender(
            "celery",
            "Celery",
            "bench.celery_pipeline",
            _standard("bench.celery_pipeline"),
            "`chain` of 3 tasks + a sink task, each on its own queue and worker process "
            "(`--pool threads --concurrency 10`); `task_acks_late`, `confirm_publish`, "
            "persistent, quorum queues, prefetch 100, no result backend, log level WARNING; "
            "publisher: 8 threads, each `apply_async` waits for its confirm",
            ("celery", "kombu", "amqp"),
        ),
    )
}
