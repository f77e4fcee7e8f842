"""The HTTP pipeline (`http_pipeline`) as local processes: first -> service_a/b/c -> last.

Each server listens on a port of its own on 127.0.0.1, picked once (below the kernel's
ephemeral range, see `private_broker.free_ports`) and kept across restarts, so that the stage
before a restarted one finds it again at the same URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from common.topology import PIPELINE_QUEUES, SINK_QUEUE, STAGES, following_queue
from harness.private_broker import free_ports
from harness.processes import Proc, wait_for

READY_TIMEOUT_S = 30  # gunicorn and the app start in well under a second; a busy machine is slower


def _ports() -> dict[str, int]:
    return dict(zip(PIPELINE_QUEUES, free_ports(len(PIPELINE_QUEUES)), strict=True))


@dataclass
class HttpPipelineRun:
    """`start` is a `harness.processes.Launcher` (or the conftest fixture of the same name)."""

    start: Callable[..., Proc]
    count: int
    env: dict[str, object] = field(default_factory=dict)  # for every process
    ports: dict[str, int] = field(default_factory=_ports)  # by the name of the queue it replaces
    servers: dict[str, Proc] = field(default_factory=dict)  # the latest of each
    stages: list[Proc] = field(default_factory=list)  # every one started
    lasts: list[Proc] = field(default_factory=list)
    firsts: list[Proc] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/messages"

    def start_stage(self, stage: str, **env: object) -> Proc:
        proc = self.start(
            "http_pipeline.service",
            f"http-{stage}",
            STAGE=stage,
            HTTP_BIND=f"127.0.0.1:{self.ports[stage]}",
            NEXT_URL=self.url(following_queue(stage) or SINK_QUEUE),
            **{**self.env, **env},
        )
        self.servers[stage] = proc
        self.stages.append(proc)
        return proc

    def start_last(self, **env: object) -> Proc:
        proc = self.start(
            "http_pipeline.last",
            "http-last",
            HTTP_BIND=f"127.0.0.1:{self.ports[SINK_QUEUE]}",
            **{**self.env, **env},
        )
        self.servers[SINK_QUEUE] = proc
        self.lasts.append(proc)
        return proc

    def start_first(self, **env: object) -> Proc:
        proc = self.start(
            "http_pipeline.first",
            "http-first",
            NEXT_URL=self.url(STAGES[0]),
            NUMBER_OF_MESSAGES=self.count,
            **{**self.env, **env},
        )
        self.firsts.append(proc)
        return proc

    def start_servers(self, **stage_env: object) -> None:
        self.start_last()
        for stage in STAGES:
            self.start_stage(stage, **stage_env)
        self.wait_until_serving()

    def wait_until_serving(self, timeout: float = READY_TIMEOUT_S) -> None:
        def serving() -> bool:
            for proc in self.servers.values():
                if not proc.running:
                    raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
            return all(proc.messages("serving") for proc in self.servers.values())

        wait_for(serving, timeout, "every HTTP server to serve")
