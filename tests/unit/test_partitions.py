"""Who holds which partition, as the broker tells it: rabbitmqctl's lists and the management API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.queue_stats import ManagementApi, Rabbitmqctl, SourceError

CONNECTIONS = [
    {"name": "10.0.0.5:4001 -> 10.0.0.2:5672", "client_properties": {"connection_name": "b@r-1"}},
    {"name": "10.0.0.6:4002 -> 10.0.0.2:5672", "client_properties": {"connection_name": "b@r-2"}},
]


def consumer(queue: str, tag: str, connection: int, *, active: bool) -> dict:
    return {
        "queue": {"name": queue},
        "consumer_tag": tag,
        "active": active,
        "channel_details": {"connection_name": CONNECTIONS[connection]["name"]},
    }


def test_the_management_api_names_each_partitions_holder() -> None:
    answers = {
        "/api/queues/%2F?columns=name,single_active_consumer_tag": [
            {"name": "b.0", "single_active_consumer_tag": "t2"},
            {"name": "b.1", "single_active_consumer_tag": "t3"},
            {"name": "dead_letter", "single_active_consumer_tag": None},
        ],
        # The consumers' own flags lag: both say active on b.0, the queue knows better.
        "/api/consumers/%2F": [
            consumer("b.0", "t1", 0, active=True),
            consumer("b.0", "t2", 1, active=True),
            consumer("b.1", "t3", 0, active=True),
        ],
        "/api/vhosts/%2F/connections": CONNECTIONS,
    }
    api = ManagementApi("http://broker:15672", "u", "p", "/")
    api._get_list = lambda path: answers[path]  # the answers, without a server
    assert api.holders() == {"b.0": "b@r-2", "b.1": "b@r-1"}


def fake_rabbitmqctl(tmp_path: Path, lists: dict[str, list]) -> list[str]:
    """A script answering `list_consumers`, `list_channels`, `list_connections` with JSON."""
    data = tmp_path / "lists.json"
    data.write_text(json.dumps(lists))
    script = tmp_path / "rabbitmqctl"
    script.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"print(json.dumps(json.load(open({str(data)!r}))[sys.argv[1]]))\n"
    )
    script.chmod(0o755)
    return [str(script)]


def test_rabbitmqctls_lists_are_joined_on_process_ids(tmp_path: Path) -> None:
    command = fake_rabbitmqctl(
        tmp_path,
        {
            "list_consumers": [
                {"queue_name": "b.0", "channel_pid": "#PID<1.2.0>", "active": False},
                {"queue_name": "b.0", "channel_pid": "#PID<1.3.0>", "active": True},
                {"queue_name": "b.1", "channel_pid": "#PID<1.2.0>", "active": True},
            ],
            "list_channels": [
                {"pid": "#PID<1.2.0>", "connection": "#PID<1.8.0>"},
                {"pid": "#PID<1.3.0>", "connection": "#PID<1.9.0>"},
            ],
            "list_connections": [
                {
                    "pid": "#PID<1.8.0>",
                    "client_properties": [["connection_name", "longstr", "b@r-1"]],
                },
                {"pid": "#PID<1.9.0>", "client_properties": [["product", "longstr", "x"]]},
            ],
        },
    )
    assert Rabbitmqctl(command, "/").holders() == {"b.0": "?", "b.1": "b@r-1"}


def test_a_failing_rabbitmqctl(tmp_path: Path) -> None:
    script = tmp_path / "rabbitmqctl"
    script.write_text(
        "#!/bin/sh\necho 'Error: unable to perform an operation on node' >&2\nexit 69\n"
    )
    script.chmod(0o755)
    with pytest.raises(SourceError, match="exit code 69: Error: unable to perform"):
        Rabbitmqctl([str(script)], "/").holders()
