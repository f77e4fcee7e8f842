"""Helpers for tests that run the real processes against the real broker."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pika

from common.settings import BrokerSettings, Env
from common.topology import queue_arguments

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "amqp://guest:guest@localhost:5672/%2F"
PIPELINE = {"service_a": "service_b", "service_b": "service_c", "service_c": "service_log"}


def broker_url() -> str:
    return os.environ.get("AMQP_URL") or DEFAULT_URL


def with_vhost(url: str, vhost: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(vhost, safe="")))


def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl (or $RABBITMQCTL, e.g. `docker compose exec -T rabbitmq rabbitmqctl`)."""
    command = [*shlex.split(os.environ.get("RABBITMQCTL", "rabbitmqctl")), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> object:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class Vhost:
    """A virtual host of the test's own, so its queues never meet the demo's or another test's."""

    def __init__(self, base_url: str) -> None:
        self.name = f"test-{uuid.uuid4().hex[:12]}"
        self.url = with_vhost(base_url, self.name)
        user = urlsplit(base_url).username or "guest"
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, user, ".*", ".*", ".*")

    def delete(self) -> None:
        rabbitmqctl("delete_vhost", self.name)

    @contextmanager
    def channel(self) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            yield connection.channel()
        finally:
            connection.close()

    def declare(self, *queues: str, **settings: str) -> None:
        """Declare queues as the processes do (their default settings, or `settings`)."""
        broker = BrokerSettings.from_env(Env(settings))
        with self.channel() as channel:
            for queue in queues:
                channel.queue_declare(queue, durable=True, arguments=queue_arguments(queue, broker))

    def depth(self, queue: str) -> int:
        """Messages ready in `queue` (0 if it does not exist)."""
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            return connection.channel().queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0
        finally:
            if connection.is_open:
                connection.close()

    def drain(self, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
        """Take every message out of `queue` (acked), in order."""
        taken = []
        with self.channel() as channel:
            while True:
                method, properties, body = channel.basic_get(queue)
                if method is None:
                    return taken
                channel.basic_ack(method.delivery_tag)
                taken.append((properties, body))

    def publish(
        self, queue: str, body: bytes, properties: pika.BasicProperties | None = None
    ) -> None:
        with self.channel() as channel:
            channel.confirm_delivery()
            channel.basic_publish("", queue, body, properties, mandatory=True)


class Proc:
    """One of the pipeline's processes (`python -m first` …), its output kept in files."""

    def __init__(self, module: str, env: Mapping[str, str], logdir: Path, name: str) -> None:
        self.name = name
        self.stdout_path = logdir / f"{name}.out"
        self.stderr_path = logdir / f"{name}.err"
        full_env = {**os.environ, "LOG_FORMAT": "json", **env}
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", module], cwd=ROOT, env=full_env, stdout=out, stderr=err
            )

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout:g}s; last output:\n{self.tail()}"
            ) from None

    def records(self) -> list[dict]:
        """The JSON log records it has written so far."""
        records = []
        for line in self.stdout_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):  # a line still being written
                if line.startswith("{"):
                    records.append(json.loads(line))
        return records

    def messages(self, message: str) -> list[dict]:
        return [r for r in self.records() if r.get("message") == message]

    def peak_rss_kib(self) -> int:
        """The process's peak resident memory so far (VmHWM), while it runs."""
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0])

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def tail(self, lines: int = 15) -> str:
        text = self.stdout_path.read_text(errors="replace") + self.stderr()
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
