"""The pipeline's processes, described once: each one's name, module, role, the environment
that wires it into the pipeline, and how many of it run.

Four places start these processes: docker-compose.yml (as its services), the fault tests and
the HTTP comparison (as local processes: `harness.pipeline`, `harness.http_run`) and the bench
(measured: `bench.project`). Each builds from this description and adds only what is its own:
where the broker or the next server is, the store, the log level, a run's load and pace.
tests/unit/test_compose_services.py checks that the compose file's services say the same.

Two pipelines. The broker one, `first` -> service_a -> service_b -> service_c -> `last`, is wired
by queue names (RABBITMQ_QUEUE in, RABBITMQ_NEXT_QUEUE out), the same wherever it runs. The HTTP
one takes its place process for process, each named after the one it stands for with `http_` in
front (`http_first` -> http_service_a -> ... -> `http_last`), and is wired by addresses: each
server listens at one (HTTP_BIND) and each caller sends to the next one's (NEXT_URL), which only
the place that runs them knows (a compose service's name, a local port): `http_env` fills them in.

The runtime (common/, first/, service/, last/, http_pipeline/) never imports this module: a
process knows its settings from its environment alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from common.topology import SINK_QUEUE, STAGES, following_queue
from http_pipeline.app import PATH

STAGE_WORKERS = 10  # threads of every stage, in both pipelines: 10 messages in work at a time
# The compose demo's pace: 0.2 to 2 s of simulated work per message in every stage, and at most
# 20 messages held per replica of a broker stage, so that a replica added with --scale gets its
# share at once. Local runs leave these out (a test wants speed) or set a pace of their own.
DEMO_WORK = {"RANDOM_WAIT_MIN": "0.2", "RANDOM_WAIT_MAX": "2"}
DEMO_PREFETCH = 20


@dataclass(frozen=True)
class Process:
    name: str  # the compose service; a local process's log files are named after it
    module: str  # it runs `python -m MODULE`
    role: str  # publisher, stage or sink
    env: Mapping[str, str] = field(default_factory=dict)  # what makes it this process
    demo_env: Mapping[str, str] = field(default_factory=dict)  # what the compose demo adds
    calls: str | None = None  # HTTP: the process it sends every message to (NEXT_URL)
    serves: bool = False  # HTTP: it takes messages at an address of its own (HTTP_BIND)
    replicas: int = 1  # how many run unless scaled (`docker compose up --scale`)


def _broker_pipeline() -> dict[str, Process]:
    first = Process("first", "first", "publisher", {"RABBITMQ_NEXT_QUEUE": STAGES[0]})
    stages = [
        Process(
            queue,
            "service",
            "stage",
            {
                "RABBITMQ_QUEUE": queue,
                "RABBITMQ_NEXT_QUEUE": str(following_queue(queue)),
                "WORKERS": str(STAGE_WORKERS),
            },
            {**DEMO_WORK, "PREFETCH": str(DEMO_PREFETCH)},
        )
        for queue in STAGES
    ]
    last = Process("last", "last", "sink", {"RABBITMQ_QUEUE": SINK_QUEUE})
    return {process.name: process for process in (first, *stages, last)}


BROKER = _broker_pipeline()
CONSUMES = {  # the queue each consumer of the broker pipeline reads, by process name
    name: process.env["RABBITMQ_QUEUE"]
    for name, process in BROKER.items()
    if process.role != "publisher"
}


def twin(name: str) -> str:
    """The HTTP process that stands for the broker pipeline's process `name`."""
    return f"http_{name}"


def _http_pipeline() -> dict[str, Process]:
    by_queue = {queue: twin(name) for name, queue in CONSUMES.items()}
    first = Process(twin("first"), "http_pipeline.first", "publisher", calls=by_queue[STAGES[0]])
    stages = [
        Process(
            twin(queue),
            "http_pipeline.service",
            "stage",
            {"STAGE": queue, "WORKERS": str(STAGE_WORKERS)},
            DEMO_WORK,
            calls=by_queue[str(following_queue(queue))],
            serves=True,
        )
        for queue in STAGES
    ]
    last = Process(twin("last"), "http_pipeline.last", "sink", serves=True)
    return {process.name: process for process in (first, *stages, last)}


HTTP = _http_pipeline()


def message_url(address: str) -> str:
    """Where the HTTP server at `address` (host:port) takes messages."""
    return f"http://{address}{PATH}"


def http_env(
    process: Process, address: Callable[[str], str], bind: str | None = None
) -> dict[str, str]:
    """`process`'s environment with its addresses, `address(name)` being where the process
    `name` is reached (host:port): it sends to the process it calls there, and listens on
    `bind` if it serves (by default where it is reached)."""
    env = dict(process.env)
    if process.serves:
        env["HTTP_BIND"] = bind or address(process.name)
    if process.calls is not None:
        env["NEXT_URL"] = message_url(address(process.calls))
    return env
