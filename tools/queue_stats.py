"""Queue depths (and rates, where the broker keeps them) from the management API or rabbitmqctl.

The management API answers only when the management plugin is enabled (the compose broker has
it); rabbitmqctl works on any broker but gives no rates, and must run where the broker runs
(`docker compose exec -T rabbitmq rabbitmqctl` for the compose one). Both say, for a quorum
queue, which node leads it and which of its members (replicas) are online: on a cluster, a
queue with fewer than a majority online takes and gives nothing until a node comes back.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from common.settings import redact_url

HTTP_TIMEOUT_S = 3.0
RABBITMQCTL_TIMEOUT_S = 30.0
RABBITMQCTL_COLUMNS = (  # of list_queues
    "name",
    "messages_ready",
    "messages_unacknowledged",
    "consumers",
    "type",
    "leader",
    "members",
    "online",
)


class SourceError(RuntimeError):
    """The source did not answer usefully; `str(error)` says why, in a few words."""


@dataclass(frozen=True)
class QueueStats:
    ready: int
    unacked: int
    consumers: int
    # Messages per second published into the queue and acknowledged out of it, from the
    # broker's message stats; None where it has none (rabbitmqctl, or statistics turned off).
    in_rate: float | None = None
    out_rate: float | None = None
    # A quorum queue's leader node and its members, all and online; None for a classic queue.
    leader: str | None = None
    members: int | None = None
    online: int | None = None
    # Keyed mode: the connection name (`<stage>@<REPLICA_ID>`) of the partition's one active
    # consumer; None where nobody holds it, or the queue has no single active consumer.
    holder: str | None = None

    @property
    def depth(self) -> int:
        return self.ready + self.unacked


class Source(Protocol):
    description: str

    def sample(self) -> dict[str, QueueStats]:
        """Every queue of the virtual host, by name; raises SourceError."""

    def holders(self) -> dict[str, str]:
        """Queue -> the connection name (`<stage>@<REPLICA_ID>`) of its single active consumer,
        for the queues that have one (keyed mode's partitions); raises SourceError."""


class ManagementApi:
    def __init__(self, base_url: str, user: str, password: str, vhost: str) -> None:
        self.description = f"the management API at {redact_url(base_url)}"
        self._base = base_url.rstrip("/")
        self._vhost_path = quote(vhost, safe="")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        self._vhost = vhost

    def sample(self) -> dict[str, QueueStats]:
        queues = self._get_list(f"/api/queues/{self._vhost_path}")
        return {q["name"]: self._stats(q) for q in queues if isinstance(q, dict) and "name" in q}

    def holders(self) -> dict[str, str]:
        # The queues' `single_active_consumer_tag` says who is active: the consumers' own
        # `active` flag can lag behind a switch.
        queues = self._get_list(
            f"/api/queues/{self._vhost_path}?columns=name,single_active_consumer_tag"
        )
        consumers = self._get_list(f"/api/consumers/{self._vhost_path}")
        connections = self._get_list(f"/api/vhosts/{self._vhost_path}/connections")
        names = {c.get("name"): connection_name(c.get("client_properties")) for c in connections}
        by_tag = {
            ((c.get("queue") or {}).get("name"), c.get("consumer_tag")): names.get(
                (c.get("channel_details") or {}).get("connection_name"), ""
            )
            for c in consumers
        }
        return {
            q["name"]: by_tag.get((q["name"], q["single_active_consumer_tag"])) or "?"
            for q in queues
            if q.get("single_active_consumer_tag")
        }

    def _get_list(self, path: str) -> list[dict]:
        request = urllib.request.Request(self._base + path, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            raise SourceError(self._http_reason(error.code, error.reason)) from None
        except urllib.error.URLError as error:
            reason = error.reason
            raise SourceError(getattr(reason, "strerror", None) or str(reason)) from None
        except (OSError, ValueError) as error:  # timeouts, resets, a body that is not JSON
            raise SourceError(str(error) or type(error).__name__) from None
        if not isinstance(answer, list):
            raise SourceError(f"the answer to {path.split('?', maxsplit=1)[0]} is not a list")
        return [item for item in answer if isinstance(item, dict)]

    def _http_reason(self, code: int, reason: str) -> str:
        if code == 401:
            return "HTTP 401: it refused the user and password of AMQP_URL"
        if code == 404:
            return f"HTTP 404: no virtual host {self._vhost!r}"
        return f"HTTP {code} {reason}"

    @staticmethod
    def _stats(queue: dict) -> QueueStats:
        stats = queue.get("message_stats")

        def rate(name: str) -> float | None:
            if not isinstance(stats, dict):
                return None
            details = stats.get(f"{name}_details")
            value = details.get("rate") if isinstance(details, dict) else None
            return float(value) if isinstance(value, int | float) else 0.0

        return QueueStats(
            ready=count(queue.get("messages_ready")),
            unacked=count(queue.get("messages_unacknowledged")),
            consumers=count(queue.get("consumers")),
            in_rate=rate("publish"),
            out_rate=rate("ack"),
            **replicas(queue),
        )


class Rabbitmqctl:
    def __init__(self, command: list[str], vhost: str) -> None:
        self.description = " ".join(command)
        self._command = command
        self._vhost = vhost

    def sample(self) -> dict[str, QueueStats]:
        queues = self._list("list_queues", *RABBITMQCTL_COLUMNS)
        try:
            return {
                q["name"]: QueueStats(
                    count(q.get("messages_ready")),
                    count(q.get("messages_unacknowledged")),
                    count(q.get("consumers")),
                    **replicas(q),
                )
                for q in queues
            }
        except (TypeError, KeyError, AttributeError):
            raise SourceError("its output is not the JSON list of queues expected") from None

    def holders(self) -> dict[str, str]:
        # Consumers name their channel, channels their connection, connections the name the
        # client gave: three lists joined on process ids.
        consumers = self._list("list_consumers", "queue_name", "channel_pid", "active")
        channels = {
            c.get("pid"): c.get("connection")
            for c in self._list("list_channels", "pid", "connection")
        }
        names = {
            c.get("pid"): connection_name(
                {item[0]: item[2] for item in c.get("client_properties") or [] if len(item) == 3}
            )
            for c in self._list("list_connections", "pid", "client_properties")
        }
        return {
            c.get("queue_name"): names.get(channels.get(c.get("channel_pid")), "") or "?"
            for c in consumers
            if c.get("active") is True
        }

    def _list(self, listing: str, *columns: str) -> list[dict]:
        command = [*self._command, listing, "-p", self._vhost, *columns, "--formatter", "json"]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=RABBITMQCTL_TIMEOUT_S, check=False
            )
        except FileNotFoundError:
            raise SourceError("command not found") from None
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SourceError(str(error)) from None
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
            raise SourceError(f"exit code {result.returncode}: {lines[-1]}")
        try:
            listed = json.loads(result.stdout)
        except ValueError:
            raise SourceError("its output is not the JSON list expected") from None
        if not isinstance(listed, list):
            raise SourceError("its output is not the JSON list expected")
        return [item for item in listed if isinstance(item, dict)]


def connection_name(client_properties: object) -> str:
    """The name a client gave its connection (pika's `connection_name` client property)."""
    name = client_properties.get("connection_name") if isinstance(client_properties, dict) else None
    return name if isinstance(name, str) else ""


def count(value: object) -> int:
    """A message or consumer count; a queue that is down reports none (empty or null)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def replicas(queue: dict) -> dict[str, str | int | None]:
    """`leader`, `members` and `online` of a quorum queue, in either source's fields (node
    names, lists of node names); all None for any other type. (RabbitMQ 3.10 leaves a classic
    queue's fields empty; 4.0 names its node as leader and only member, with none online.)"""
    members, online = queue.get("members"), queue.get("online")
    if queue.get("type") != "quorum" or not isinstance(members, list) or not members:
        return {"leader": None, "members": None, "online": None}
    leader = queue.get("leader")
    return {
        "leader": leader if isinstance(leader, str) and leader else None,
        "members": len(members),
        "online": len(online) if isinstance(online, list) else 0,
    }
