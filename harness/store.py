"""`last`'s store for tests and the bench: keys of a run's own, or a Redis server of its own.

`StoreKeys` is a key prefix of its own on the shared Redis (STORE_URL, by default the one at
127.0.0.1:6379), so that runs in parallel never meet; `delete()` removes its keys.
`PrivateRedis` runs the installed `redis-server` on a port of its own, for a test that stops and
starts the store (the shared server is never stopped) or a bench run that wants the durability
settings of the compose file (append-only file, fsync before every reply).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import redis

from harness.private_broker import free_ports
from harness.processes import wait_for
from last.store_settings import StoreSettings
from tools.store_reader import glob_escape, stored_records

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def store_url() -> str:
    return os.environ.get("STORE_URL") or DEFAULT_URL


class NoRedisServer(RuntimeError):
    """No Redis answers, or no redis-server to run."""


class StoreKeys:
    """The keys `<prefix>*` of one test or run, on the Redis at `url`."""

    def __init__(self, url: str | None = None, label: str = "test") -> None:
        self.url = url or store_url()
        self.prefix = f"rhtest:{label}-{uuid.uuid4().hex[:12]}:"
        self.settings = StoreSettings(self.url, self.prefix)

    @property
    def env(self) -> dict[str, str]:
        """What `last` needs to write here."""
        return {"STORE_URL": self.url, "STORE_KEY_PREFIX": self.prefix}

    def records(self) -> dict[str, dict]:
        """The records stored so far, by broker_message_id."""
        return {key: json.loads(record) for key, record in stored_records(self.settings)}

    def delete(self) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            keys = list(client.scan_iter(match=glob_escape(self.prefix) + "*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        finally:
            client.close()


def answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class PrivateRedis:
    """A `redis-server` of our own on 127.0.0.1, its files in `directory`; `durable` as the
    compose file's store (appendonly yes, appendfsync always), else nothing on disk."""

    def __init__(self, directory: Path, *, durable: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise NoRedisServer("redis-server is not installed")
        [self.port] = free_ports(1)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        if durable:
            persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            persistence = ["--appendonly", "no"]
        self.argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--save", "",
            *persistence,
            "--logfile", str(directory / "redis.log"),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> None:
        self.process = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        wait_for(lambda: answers(self.url), timeout, f"redis-server on port {self.port}")

    def stop(self) -> None:
        """SIGKILL it: its clients see the connection drop, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None
