"""Contender: this project as deployed, its real processes (`harness.deployment.BROKER`).

`python -m first`, one `python -m service` per stage with `WORKERS=10` (the middle stage with
`spec.replicas` replicas and `spec.work` seconds of work per message for the scaling run) and
`python -m last` with `EXPECTED_MESSAGES=N` and `RESULTS_FILE`, whose `completed` records carry
`created_at` and `completed_at`. Logging at WARNING (no record per message), no progress lines.
`plan_with_store` is the same with `last` writing its records to a Redis of the run's own, set
up as the compose file's store (append-only file, fsync before every reply); `plan_with_metrics`
the same with every process serving its Prometheus metrics (METRICS_PORT), as in compose;
`plan_with_traces` with every process exporting its spans (OTLP/HTTP, the SDK's default batch
schedule) to a receiver of the run's own (`harness.otlp_receiver`), its CPU counted too.
"""

from __future__ import annotations

from dataclasses import replace

from bench.runs import Plan, ProcSpec, RunSpec
from common.settings import BrokerSettings, Env
from common.topology import STAGES, input_queues
from harness.broker import Vhost
from harness.deployment import BROKER, CONSUMES
from harness.private_broker import free_ports
from harness.processes import python_module
from harness.store import PrivateRedis

SCALED_STAGE = STAGES[1]  # the middle stage: the scaling run adds replicas of it
TITLE = "this project (first, service x3 WORKERS=10, last)"
NOTES = (
    "the real `first`, `service` and `last` processes; streaming publisher confirms on every "
    "hop, ack after the next hop's confirm, dead-lettering set up; PREFETCH 100 (default)"
)


def plan_with_store(vhost: Vhost, spec: RunSpec) -> Plan:
    return plan(vhost, spec, store=PrivateRedis(spec.logdir / "redis", durable=True))


def plan_with_metrics(vhost: Vhost, spec: RunSpec) -> Plan:
    return plan(vhost, spec, metrics=True)


def plan_with_traces(vhost: Vhost, spec: RunSpec) -> Plan:
    [port] = free_ports(1)
    collector = ProcSpec(
        "collector", "collector", python_module("harness.otlp_receiver", str(port))
    )
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    return plan(vhost, replace(spec, env={**spec.env, **endpoint}), extra=[collector])


def plan(
    vhost: Vhost,
    spec: RunSpec,
    *,
    store: PrivateRedis | None = None,
    metrics: bool = False,
    extra: list[ProcSpec] | None = None,
) -> Plan:
    common = {
        "AMQP_URL": ",".join(vhost.node_urls),  # every node of a cluster
        **vhost.client_env,  # its CA, over TLS
        "QUEUE_TYPE": spec.queue_type,
        **spec.env,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "PROGRESS_INTERVAL": "0",
        "CONNECT_TIMEOUT": "30",
    }
    run = {  # what this run adds, by role
        "publisher": {"NUMBER_OF_MESSAGES": str(spec.messages), "PUBLISH_RATE": f"{spec.rate:g}"},
        "stage": {},
        "sink": {
            "EXPECTED_MESSAGES": str(spec.messages),
            "RESULTS_FILE": str(spec.results),
            "STORE_URL": store.url if store else "",  # "": in memory, whatever the caller's env
        },
    }
    layout = BrokerSettings.from_env(Env(dict(spec.env)))  # partitions, in keyed mode
    ports = iter(free_ports(len(BROKER) + spec.replicas) if metrics else [])

    def metrics_port() -> dict[str, str]:  # a port of its own for each process, when asked
        return {"METRICS_PORT": str(next(ports))} if metrics else {}

    procs: list[ProcSpec] = [ProcSpec("redis", "store", store.argv)] if store else []
    procs += extra or []
    ready: dict[str, int] = {}
    for name, process in BROKER.items():
        env = {**common, **process.env, **run[process.role]}
        replicas = process.replicas
        if name == SCALED_STAGE:
            replicas = spec.replicas
            if spec.work:
                env["RANDOM_WAIT_MIN"] = env["RANDOM_WAIT_MAX"] = f"{spec.work:g}"
        names = [name] if replicas == 1 else [f"{name}-{n}" for n in range(1, replicas + 1)]
        for each in names:
            argv, probe = python_module(process.module), {}
            if spec.probe:  # the same process, its steps logged (bench.hop_probe)
                argv = python_module("bench.hop_probe")
                probe = {"PROBED_MODULE": process.module, "HOP_PROCESS": each}
                probe["HOP_LOG"] = str(spec.hop_log)
            procs.append(ProcSpec(each, process.role, argv, env | metrics_port() | probe))
        if name in CONSUMES:
            ready |= {queue: replicas for queue in input_queues(CONSUMES[name], layout)}
    [publisher] = [proc for proc in procs if proc.role == "publisher"]
    consumers = [proc for proc in procs if proc is not publisher]
    profile = (SCALED_STAGE, "last") if spec.profile else ()
    return Plan(
        spec.label,
        spec.messages,
        consumers,
        publisher,
        ready,
        spec.results,
        vhost,
        profile,
        hop_log=spec.hop_log if spec.probe else None,
    )
