"""The HTTP pipeline (`http_pipeline`) as local processes: first -> service_a/b/c -> last.

Its processes are `harness.deployment.HTTP`'s. Each server listens on a port of its own on
127.0.0.1, picked once (below the kernel's ephemeral range, see `private_broker.free_ports`) and
kept across restarts, so that the process before a restarted one finds it again at the same URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from common.topology import STAGES
from harness.deployment import HTTP, http_env, message_url, twin
from harness.private_broker import free_ports
from harness.processes import Proc, wait_for

READY_TIMEOUT_S = 30  # gunicorn and the app start in well under a second; a busy machine is slower
SERVERS = tuple(name for name, process in HTTP.items() if process.serves)


def _ports() -> dict[str, int]:
    return dict(zip(SERVERS, free_ports(len(SERVERS)), strict=True))


@dataclass
class HttpPipelineRun:
    """`start` is a `harness.processes.Launcher` (or the conftest fixture of the same name)."""

    start: Callable[..., Proc]
    count: int
    env: dict[str, object] = field(default_factory=dict)  # for every process
    ports: dict[str, int] = field(default_factory=_ports)  # by server (http_service_a, ...)
    servers: dict[str, Proc] = field(default_factory=dict)  # the latest of each, by server
    stages: list[Proc] = field(default_factory=list)  # every one started
    lasts: list[Proc] = field(default_factory=list)
    firsts: list[Proc] = field(default_factory=list)

    def address(self, server: str) -> str:
        return f"127.0.0.1:{self.ports[server]}"

    def url(self, server: str) -> str:
        return message_url(self.address(server))

    def launch(self, name: str, **env: object) -> Proc:
        """Start `HTTP[name]` at its local addresses, with the run's `env`, then this call's."""
        process = HTTP[name]
        proc = self.start(
            process.module, name, **{**http_env(process, self.address), **self.env, **env}
        )
        if process.serves:
            self.servers[name] = proc
        return proc

    def start_stage(self, stage: str, **env: object) -> Proc:
        """The HTTP process that stands for the broker pipeline's `stage` (service_a, ...)."""
        proc = self.launch(twin(stage), **env)
        self.stages.append(proc)
        return proc

    def start_last(self, **env: object) -> Proc:
        proc = self.launch(twin("last"), **env)
        self.lasts.append(proc)
        return proc

    def start_first(self, **env: object) -> Proc:
        proc = self.launch(twin("first"), NUMBER_OF_MESSAGES=self.count, **env)
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
