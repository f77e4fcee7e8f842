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
from collections.abc import Mapping
from pathlib import Path

import redis

from harness.private_broker import free_ports
from harness.processes import wait_for
from harness.tls import HOST, TlsFiles
from last.store_settings import StoreSettings, glob_escape
from provision.store_acl import store_acl
from tools.store_reader import stored_records

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def store_url() -> str:
    return os.environ.get("STORE_URL") or DEFAULT_URL


class NoRedisServer(RuntimeError):
    """No Redis answers, or no redis-server to run."""


class StoreKeys:
    """The keys `<prefix>*` of one test or run, on the Redis at `url` (over rediss://, verified
    against the CAs of `ca_file`)."""

    def __init__(self, url: str | None = None, label: str = "test", ca_file: str = "") -> None:
        self.url = url or store_url()
        self.prefix = f"rhtest:{label}-{uuid.uuid4().hex[:12]}:"
        self.settings = StoreSettings(self.url, self.prefix, ca_file)

    @property
    def env(self) -> dict[str, str]:
        """What `last` needs to write here."""
        tls = {"STORE_CA_FILE": self.settings.ca_file} if self.settings.ca_file else {}
        return {"STORE_URL": self.url, "STORE_KEY_PREFIX": self.prefix, **tls}

    def records(self) -> dict[str, dict]:
        """The records stored so far, by broker_message_id."""
        return {key: json.loads(record) for key, record in stored_records(self.settings)}

    def delete(self) -> None:
        client = self.settings.client()
        try:
            keys = list(client.scan_iter(match=glob_escape(self.prefix) + "*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        finally:
            client.close()


class StoreUsers:
    """The store's ACL users (`provision.store_acl`) for the keys of `keys`, made on its Redis
    with ACL SETUSER under names of their own (the prefix's), each with its role's password in
    `passwords` (by role: `last`, `monitor`); `delete()` removes them. The ACL file's
    `user default off` is not applied: the test's Redis is shared."""

    def __init__(self, keys: StoreKeys, passwords: Mapping[str, str]) -> None:
        self.keys = keys
        self.passwords = dict(passwords)
        tag = keys.prefix.strip(":").replace(":", "-")
        self.names = {role: f"{tag}-{role}" for role in ("last", "monitor")}
        self._admin = redis.Redis.from_url(keys.url)
        self._made: list[str] = []
        lines = store_acl(keys.prefix, self.passwords, self.names)
        assert lines[0] == "user default off", lines[0]
        for line in lines[1:]:
            _, name, *rules = line.split()
            name = name if name in self.names.values() else f"{tag}-{name}"
            self._admin.execute_command("ACL", "SETUSER", name, "reset", *rules)
            self._made.append(name)

    def url(self, role: str, *, password: bool = True) -> str:
        """The store's URL, logged in as `role`'s user (with its password, unless not)."""
        host = self.keys.url.split("//", 1)[1].rsplit("@", 1)[-1]
        secret = f":{self.passwords[role]}" if password else ""
        return f"redis://{self.names[role]}{secret}@{host}"

    def delete(self) -> None:
        self._admin.execute_command("ACL", "DELUSER", *self._made)
        self._admin.close()


def answers(url: str, ca_file: str = "") -> bool:
    client = StoreSettings(url, "", ca_file).client(socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class PrivateRedis:
    """A `redis-server` of our own on 127.0.0.1, its files in `directory`; `durable` as the
    compose file's store (appendonly yes, appendfsync always), else nothing on disk; with `tls`,
    TLS alone on its port, as the compose file's (its URL then rediss://, `ca_file` its CA)."""

    def __init__(
        self, directory: Path, *, durable: bool = False, tls: TlsFiles | None = None
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise NoRedisServer("redis-server is not installed")
        [self.port] = free_ports(1)
        if tls is None:
            self.url, self.ca_file = f"redis://127.0.0.1:{self.port}/0", ""
            listen = ["--port", str(self.port)]
        else:
            self.url, self.ca_file = f"rediss://{HOST}:{self.port}/0", str(tls.ca)
            listen = tls.redis_arguments(self.port)
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        if durable:
            persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            persistence = ["--appendonly", "no"]
        self.argv = [
            binary,
            *listen,
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
        wait_for(
            lambda: answers(self.url, self.ca_file), timeout, f"redis-server on port {self.port}"
        )

    def stop(self) -> None:
        """SIGKILL it: its clients see the connection drop, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None
