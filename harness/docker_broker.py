"""A throwaway RabbitMQ in Docker, for a machine that has Docker but no broker of its own.

`make test` on a laptop with only Docker: the tests find no broker at AMQP_URL, so they start
the compose file's broker image (the same RabbitMQ the demo runs) in a container of their own,
with a random user and password, its AMQP port published on a free port of 127.0.0.1, and point
AMQP_URL and RABBITMQCTL (`docker exec NAME rabbitmqctl`) at it. The container is removed at the
end, whatever happened (`--rm`, and `docker rm -f`).

In a parallel run (pytest-xdist) the workers share one container: the run names it and its
password before any worker starts (`shared_identity`), the first worker that needs a broker
starts it under a file lock, the others attach to it (`DockerBroker.attach`), and the run
removes it when every worker is done.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

from harness.broker import refusal
from harness.processes import ROOT, wait_for

COMPOSE_FILE = ROOT / "docker-compose.yml"
READY_TIMEOUT_S = 120  # a first start of RabbitMQ 4 in a container takes 10-30 s here
DOCKER_TIMEOUT_S = 60


class DockerUnavailable(RuntimeError):
    """No Docker engine answers, or the broker image cannot be started."""


def broker_image(compose_file: Path = COMPOSE_FILE) -> str:
    """The image the compose file's `rabbitmq` service runs."""
    match = re.search(
        r"^  rabbitmq:\n(?:    .*\n)*?    image: (\S+)", compose_file.read_text(), re.M
    )
    if match is None:
        raise DockerUnavailable(f"no image for service rabbitmq in {compose_file}")
    return match.group(1)


def docker(*args: str, timeout: float = DOCKER_TIMEOUT_S) -> str:
    try:
        result = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DockerUnavailable(f"docker {args[0]}: {error}") from None
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise DockerUnavailable(f"docker {args[0]}: {lines[-1]}")
    return result.stdout


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=15)
    except DockerUnavailable:
        return False
    return True


SHARED = "RHTEST_SHARED_BROKER"  # "NAME PASSWORD" of a parallel run's throwaway broker


def new_identity() -> str:
    """A container name and a password for a throwaway broker, as `SHARED` holds them."""
    return f"rhtest-broker-{secrets.token_hex(4)} {secrets.token_hex(12)}"


def shared_identity() -> str | None:
    """The parallel run's throwaway broker (`SHARED`), or None outside such a run."""
    return os.environ.get(SHARED) or None


class DockerBroker:
    """One RabbitMQ container; `start()` (or `attach()` to a running one) then `stop()`, which
    removes it. `identity` ("NAME PASSWORD", see `new_identity`) names a shared one."""

    def __init__(self, image: str | None = None, identity: str | None = None) -> None:
        self.image = image or broker_image()
        self.name, self.password = (identity or new_identity()).split()
        self.user = "rhtest"
        self.port = 0
        self.url = ""
        self.management_url = ""
        self.rabbitmqctl = f"docker exec -i {self.name} rabbitmqctl"

    def start(self) -> None:
        docker(
            "run", "--detach", "--rm", "--name", self.name, "--hostname", self.name,
            "--env", f"RABBITMQ_DEFAULT_USER={self.user}",
            "--env", f"RABBITMQ_DEFAULT_PASS={self.password}",
            "--publish", "127.0.0.1::5672",
            "--publish", "127.0.0.1::15672",
            self.image,
        )  # fmt: skip
        self._find_ports()

    def attach(self) -> bool:
        """Use the container of this name if it runs (started by another worker); False if
        there is none."""
        try:
            running = docker("inspect", "--format", "{{.State.Running}}", self.name).strip()
        except DockerUnavailable:
            return False
        if running != "true":
            return False
        self._find_ports()
        return True

    def _find_ports(self) -> None:
        self.port = self._host_port(5672)
        self.url = f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/%2F"
        self.management_url = f"http://127.0.0.1:{self._host_port(15672)}"
        self._wait_until_ready()

    def _host_port(self, port: int) -> int:
        mapping = docker("port", self.name, f"{port}/tcp").split()[0]
        return int(mapping.rsplit(":", 1)[1])

    def _wait_until_ready(self) -> None:
        try:
            wait_for(lambda: refusal(self.url) is None, READY_TIMEOUT_S, "the broker", interval=0.5)
        except AssertionError:
            logs = docker("logs", "--tail", "20", self.name)
            raise DockerUnavailable(
                f"{self.image} not ready after {READY_TIMEOUT_S}s:\n{logs}"
            ) from None

    def use(self) -> None:
        """Point this process (and the processes it starts) at the container."""
        os.environ["AMQP_URL"] = self.url
        os.environ["RABBITMQCTL"] = self.rabbitmqctl

    def stop(self) -> None:
        with contextlib.suppress(DockerUnavailable, subprocess.TimeoutExpired):
            docker("rm", "--force", self.name)
