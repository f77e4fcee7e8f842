"""Which replica holds which partition (ORDERING=keyed): each partition queue's single active
consumer, named by its connection's name (`<stage>@<REPLICA_ID>`).

The broker knows; the clients are not told when they become active. The management API gives
consumers (with their channel's connection) and connections (with the name the client gave);
rabbitmqctl gives the same in three lists joined on process ids.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

RABBITMQCTL_TIMEOUT_S = 30.0


class HoldersError(RuntimeError):
    """The broker could not be asked; `str(error)` says why, in a few words."""


def holders_from_rabbitmqctl(command: list[str], vhost: str) -> dict[str, str]:
    """Queue -> the connection name of its active consumer, for queues with one."""

    def listing(*columns: str) -> list[dict]:
        return _rabbitmqctl(command, vhost, *columns)

    consumers = listing("list_consumers", "queue_name", "channel_pid", "active")
    channels = {c["pid"]: c["connection"] for c in listing("list_channels", "pid", "connection")}
    names = {
        c["pid"]: _connection_name(dict((k, v) for k, _type, v in c["client_properties"]))
        for c in listing("list_connections", "pid", "client_properties")
    }
    return _active(
        consumers,
        queue=lambda c: c["queue_name"],
        connection=lambda c: names.get(channels.get(c["channel_pid"], ""), ""),
    )


def holders_from_management(get: Callable[[str], object], vhost_path: str) -> dict[str, str]:
    """The same from the management API; `get(path)` returns a path's JSON (`vhost_path` is the
    vhost, quoted for a URL). The queues' `single_active_consumer_tag` says who is active: the
    consumers' own `active` flag can lag behind a switch."""
    queues = get(f"/api/queues/{vhost_path}?columns=name,single_active_consumer_tag")
    consumers = get(f"/api/consumers/{vhost_path}")
    connections = get(f"/api/vhosts/{vhost_path}/connections")
    if not all(isinstance(listed, list) for listed in (queues, consumers, connections)):
        raise HoldersError("the answer is not a list")
    names = {
        c.get("name"): _connection_name(c.get("client_properties") or {})
        for c in connections
        if isinstance(c, dict)
    }
    by_tag = {
        ((c.get("queue") or {}).get("name"), c.get("consumer_tag")): names.get(
            (c.get("channel_details") or {}).get("connection_name"), ""
        )
        for c in consumers
        if isinstance(c, dict)
    }
    return {
        q["name"]: by_tag.get((q["name"], q["single_active_consumer_tag"])) or "?"
        for q in queues
        if isinstance(q, dict) and q.get("single_active_consumer_tag")
    }


def _active(
    consumers: list[dict], *, queue: Callable[[dict], str], connection: Callable[[dict], str]
) -> dict[str, str]:
    return {queue(c): connection(c) or "?" for c in consumers if c.get("active") is True}


def _connection_name(client_properties: dict) -> str:
    name = client_properties.get("connection_name")
    return name if isinstance(name, str) else ""


def _rabbitmqctl(command: list[str], vhost: str, *args: str) -> list[dict]:
    try:
        result = subprocess.run(
            [*command, *args, "-p", vhost, "--formatter", "json"],
            capture_output=True,
            text=True,
            timeout=RABBITMQCTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise HoldersError(str(error)) from None
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise HoldersError(f"exit code {result.returncode}: {lines[-1]}")
    try:
        listed = json.loads(result.stdout)
    except ValueError:
        raise HoldersError("its output is not JSON") from None
    if not isinstance(listed, list):
        raise HoldersError("its output is not a list")
    return [item for item in listed if isinstance(item, dict)]
