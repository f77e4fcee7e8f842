"""What the compose demos share (`make cluster-demo`, `make keyed-demo`): docker compose under a
project name and host ports of their own, the apps' JSON records read back from its logs, and
the checks that every message completed once and nothing died.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness import processes
from harness.deployment import BROKER as BROKER_PIPELINE
from harness.deployment import CONSUMES
from harness.processes import ROOT

BROKER = "rabbitmq"  # the base file's broker service
APPS = tuple(BROKER_PIPELINE)  # first, service_a, service_b, service_c, last
CONSUMERS = tuple(CONSUMES)
UP_TIMEOUT_S = 300  # building the image and the nodes' first start
RUN_TIMEOUT_S = 300
_RECORD = re.compile(r"^(?P<container>\S+)\s+\|\s(?P<json>\{.*\})\s*$")


class DemoFailed(AssertionError):
    """A check of the demo failed; the message says which and what was seen."""


@dataclass
class Compose:
    project: str
    files: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    # Compose v2; `("docker-compose",)` for 1.29 (whose `ps` has no JSON: `containers()` is v2's)
    binary: Sequence[str] = ("docker", "compose")

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        command = [*self.binary, "-p", self.project]
        for file in self.files:
            command += ["-f", file]
        result = subprocess.run(
            [*command, *args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            shown = " ".join((*self.binary, *args))
            raise DemoFailed(f"{shown} failed:\n{result.stderr[-2000:]}")
        return result.stdout

    def records(self, service: str) -> list[tuple[str, dict]]:
        """(container, record) for each JSON log record of `service`'s containers so far."""
        found = []
        for line in self("logs", "--no-color", service).splitlines():
            match = _RECORD.match(line)
            if match:
                try:
                    record = json.loads(match["json"])
                except ValueError:
                    continue  # a line cut short
                found.append((match["container"], record))
        return found

    def fresh_up(self, *options: str) -> float:
        """`down --volumes`, then `up --build --detach` with `options`: seconds the up took."""
        self("down", "--volumes", "--remove-orphans", timeout=180)
        started = time.monotonic()
        self("up", "--build", "--detach", *options, timeout=UP_TIMEOUT_S)
        return time.monotonic() - started

    def rabbitmqctl(self, node: str, *args: str) -> str:
        return self("exec", "-T", node, "rabbitmqctl", *args, timeout=60)

    def queues(self, node: str = BROKER) -> dict[str, dict]:
        columns = ("name", "messages", "leader", "members", "online")
        output = self.rabbitmqctl(node, "list_queues", *columns, "--formatter", "json")
        return {queue["name"]: queue for queue in json.loads(output)}

    def leader_of(self, queue: str, node: str = BROKER) -> str:
        """The host name of the node that leads `queue`, as `node` sees it."""
        return self.queues(node)[queue]["leader"].split("@")[1]

    def containers(self) -> list[dict]:
        """`docker compose ps -a` as records (Name, Service, State, ExitCode, ...)."""
        output = self("ps", "--all", "--format", "json")
        text = output.strip()
        if text.startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    """`harness.processes.wait_for`, once a second: each look runs docker compose."""
    return processes.wait_for(condition, timeout, what, interval=1.0)


def completed(compose: Compose) -> dict[str, list[str]]:
    """seq -> the broker_message_ids `last` logged as completed for it."""
    seen: dict[str, list[str]] = {}
    for _, record in compose.records("last"):
        if record.get("message") == "completed":
            seen.setdefault(record["history"][0], []).append(record["broker_message_id"])
    return seen


def wait_for_completions(compose: Compose, count: float, what: str) -> dict[str, list[str]]:
    """`completed(compose)` once `last` has logged at least `count` distinct messages."""
    return wait_for(lambda: len(seen := completed(compose)) >= count and seen, RUN_TIMEOUT_S, what)


def check_outcome(
    compose: Compose,
    messages: int,
    seen: dict[str, list[str]],
    killed: frozenset[str] | set[str] = frozenset(),
) -> str:
    """Every seq-N completed once, first exited 0, no app died or restarted but the `killed`
    containers, every queue empty; what was checked, in a line (or DemoFailed)."""
    expected = {f"seq-{n}" for n in range(1, messages + 1)}
    if set(seen) != expected:
        missing = sorted(expected - set(seen))[:10]
        raise DemoFailed(f"completed {len(seen)} distinct messages, not {messages}: {missing}")
    twice = {seq: ids for seq, ids in seen.items() if len(ids) > 1}
    if twice:
        raise DemoFailed(f"messages logged as completed twice: {dict(list(twice.items())[:5])}")
    duplicates = sum(1 for _, r in compose.records("last") if r.get("message") == "duplicate")
    states = {
        c["Name"]: (c["Service"], c["State"], c.get("ExitCode")) for c in compose.containers()
    }
    for name, (service, state, code) in states.items():
        if service == "first" and (state, code) != ("exited", 0):
            raise DemoFailed(f"{name} is {state} with exit code {code}, not exited 0")
        if service in CONSUMERS and state != "running" and name not in killed:
            raise DemoFailed(f"{name} is {state} (exit code {code}): an app died")
    restarts = {
        name: count
        for name in states
        if states[name][0] in APPS
        and name not in killed
        and (count := int(subprocess.check_output(
            ["docker", "inspect", "--format", "{{.RestartCount}}", name], text=True
        )))
    }  # fmt: skip
    if restarts:
        raise DemoFailed(f"app containers restarted: {restarts}")
    queues = wait_for(
        lambda: (q := compose.queues()) and all(x["messages"] == 0 for x in q.values()) and q,
        60,
        "every queue to be empty",
    )
    return (
        f"checked: {messages} of {messages} completed once each ({duplicates} duplicate "
        f"deliveries recognised), first exited 0, no app died or restarted, "
        f"{len(queues)} queues empty (dead_letter included)"
    )


def check_tls(compose: Compose, nodes: Sequence[str] = (BROKER,)) -> str:
    """Every node listens for AMQP over TLS alone (no plain port), and every client connected
    to any of them came over TLS; what was checked, in a line (or DemoFailed)."""
    for node in nodes:
        output = compose("exec", "-T", node, "rabbitmq-diagnostics", "-q", "listeners",
                         "--formatter", "json", timeout=60)  # fmt: skip
        amqp = {
            (listener["protocol"], listener["port"])
            for listener in json.loads(output)["listeners"]
            if listener["protocol"].startswith("amqp")
        }
        if amqp != {("amqp/ssl", 5671)}:
            raise DemoFailed(f"{node} listens for AMQP on {sorted(amqp)}, not TLS on 5671 alone")
    # Any node lists the connections of the whole cluster.
    output = compose.rabbitmqctl(nodes[0], "list_connections", "user", "ssl", "--formatter", "json")
    connections = json.loads(output)
    plain = [connection["user"] for connection in connections if not connection["ssl"]]
    if plain:
        raise DemoFailed(f"clients connected without TLS: {plain}")
    return (
        f"checked: AMQP on TLS alone on {len(nodes)} node(s), {len(connections)} clients all "
        "over TLS"
    )


def parser(prog: str, description: str, *, messages: int, project: str) -> argparse.ArgumentParser:
    """The options every demo takes: how many messages, the compose project, --keep."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--messages", type=int, default=messages, help="messages first publishes")
    parser.add_argument("--project", default=project, help="compose project")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    return parser


def run(say: Callable[[str], None], compose: Compose, demo: Callable[[], None], keep: bool) -> int:
    """Run `demo`: exit code 0 if every check passed, 1 (and what failed) if one did. The
    project's containers and volumes are removed at the end unless `keep`."""
    try:
        demo()
    except AssertionError as error:  # DemoFailed, or a wait that timed out
        say(f"FAILED: {error}")
        return 1
    finally:
        if keep:
            files = " -f ".join(compose.files)
            say(f"kept running: docker compose -p {compose.project} -f {files}")
        else:
            compose("down", "--volumes", "--remove-orphans", timeout=180, check=False)
    say("passed")
    return 0
