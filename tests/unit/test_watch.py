"""`python -m tools.watch`: queue depths and rates from the management API, else rabbitmqctl.

The management plugin may not run on the test broker, so the API is a small fake here, serving
what the real one serves (`GET /api/queues/VHOST`); rabbitmqctl is faked too for the rates it
cannot give, and used for real against a vhost with messages waiting.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from common.settings import Env
from harness.processes import ROOT
from tools.queue_stats import QueueStats
from tools.watch import WatchSettings, render, take, watch

CLOSED = "http://127.0.0.1:1"  # nothing listens on port 1: the API "is not enabled"
URL = "amqp://alice:p%40ss@localhost:5672/my%2Fvhost"


class FakeApi(ThreadingHTTPServer):
    """Answers every GET with `status` and `queues` as JSON, and remembers what it was asked."""

    def __init__(self, queues: list[dict], status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), FakeApiHandler)
        self.queues, self.status = queues, status
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeApiHandler(BaseHTTPRequestHandler):
    server: FakeApi

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Authorization", "")))
        body = json.dumps(self.server.queues if self.server.status == 200 else {"error": "no"})
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def api_with(request: pytest.FixtureRequest) -> Iterator:
    servers: list[FakeApi] = []

    def start(queues: list[dict], status: int = 200) -> FakeApi:
        server = FakeApi(queues, status)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_rabbitmqctl(tmp_path: Path) -> str:
    """A rabbitmqctl whose service_a grows by 10 ready messages at every call."""
    script = tmp_path / "rabbitmqctl"
    calls = tmp_path / "calls"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        f"n=$(wc -l < {calls})\n"
        'echo "[{\\"name\\":\\"service_a\\",\\"messages_ready\\":$((n * 10)),'
        '\\"messages_unacknowledged\\":20,\\"consumers\\":2}]"\n'
    )
    script.chmod(0o755)
    return f"{script} --node rabbit@fake"


def run_watch(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.watch", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rows(output: str, queue: str) -> list[list[str]]:
    """The figures of `queue` in each block, in order."""
    return [line.split()[1:] for line in output.splitlines() if line.split()[:1] == [queue]]


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert result.returncode == code, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("python -m tools.watch: ")
    for word in words:
        assert word in result.stderr


# -- management API ----------------------------------------------------------------------------


def test_depths_and_rates_from_the_management_api(api_with) -> None:
    stats = {"publish": 500, "publish_details": {"rate": 50.0}, "ack_details": {"rate": 6.5}}
    api = api_with(
        [
            {"name": "service_a", "messages_ready": 812, "messages_unacknowledged": 20,
             "consumers": 1, "message_stats": stats},
            {"name": "service_b", "messages_ready": 3, "messages_unacknowledged": 20,
             "consumers": 3},
            {"name": "someone_elses", "messages_ready": 1, "messages_unacknowledged": 0,
             "consumers": 0},
        ]
    )  # fmt: skip
    result = run_watch("--count", "2", "--interval", "0.1", AMQP_URL=URL, MANAGEMENT_URL=api.url)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"queues of virtual host 'my/vhost' from the management API at {api.url}")
    assert "consumers     in/s    out/s\n" in out and "consumers  change/s" not in out
    assert rows(out, "service_a") == [["812", "20", "1", "50.0", "6.5"]] * 2
    assert rows(out, "service_b") == [["3", "20", "3", "0.0", "0.0"]] * 2
    assert rows(out, "service_log") == [["-", "-", "-", "(no", "such", "queue", "yet)"]] * 2
    assert rows(out, "dead_letter") and not rows(out, "someone_elses")
    credentials = base64.b64encode(b"alice:p@ss").decode()
    assert api.requests == [("/api/queues/my%2Fvhost", f"Basic {credentials}")] * 2


def test_without_statistics_the_rates_come_from_depth_changes(api_with) -> None:
    api = api_with([{"name": "service_a", "messages_ready": 5}])
    result = run_watch("--count", "2", "--interval", "0.1", AMQP_URL=URL, MANAGEMENT_URL=api.url)
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout, "service_a") == [["5", "0", "0", "-"], ["5", "0", "0", "+0.0"]]


NODES = ["rabbit@rabbitmq", "rabbit@rabbitmq-2", "rabbit@rabbitmq-3"]


def test_leaders_and_online_members_of_quorum_queues(api_with) -> None:
    """A cluster with rabbitmq-2 down, as the management API of RabbitMQ 3.10 and 4.0 says it."""
    online = [NODES[0], NODES[2]]
    api = api_with(
        [
            {"name": "service_a", "messages_ready": 5, "type": "quorum", "node": NODES[2],
             "leader": NODES[2], "members": NODES, "online": online,
             "message_stats": {"publish_details": {"rate": 4.0}}},
            # Just after its leader was lost: a new one elected, no counts yet.
            {"name": "service_b", "messages_ready": None, "type": "quorum", "node": NODES[0],
             "leader": NODES[0], "members": NODES, "online": online},
            {"name": "dead_letter", "messages_ready": 0, "type": "classic", "node": NODES[0]},
        ]
    )  # fmt: skip
    result = run_watch("--count", "1", AMQP_URL=URL, MANAGEMENT_URL=api.url)
    assert result.returncode == 0, result.stderr
    assert "online: a quorum queue's members (replicas) that are up, of all" in result.stdout
    assert "in/s    out/s  online  leader\n" in result.stdout
    assert rows(result.stdout, "service_a") == [["5", "0", "0", "4.0", "0.0", "2/3", NODES[2]]]
    assert rows(result.stdout, "service_b") == [["0", "0", "0", "0.0", "0.0", "2/3", NODES[0]]]
    assert rows(result.stdout, "dead_letter") == [["0", "0", "0", "0.0", "0.0", "-", "-"]]


def test_an_amqp_url_of_several_nodes_gives_the_first_ones_vhost_and_user(api_with) -> None:
    api = api_with([])
    several = f"{URL},amqp://bob:other@rabbitmq-2:5672/other"
    result = run_watch("--count", "1", AMQP_URL=several, MANAGEMENT_URL=api.url)
    assert result.returncode == 0, result.stderr
    credentials = base64.b64encode(b"alice:p@ss").decode()
    assert api.requests == [("/api/queues/my%2Fvhost", f"Basic {credentials}")]


# -- rabbitmqctl -------------------------------------------------------------------------------


def test_rabbitmqctl_gives_leaders_and_online_members(tmp_path: Path) -> None:
    """What `rabbitmqctl list_queues ... type leader members online` prints (RabbitMQ 3.10,
    4.0): a classic queue has no replicas to show, whatever its fields say."""
    script = tmp_path / "rabbitmqctl"
    queues = [
        {"name": "service_a", "messages_ready": 7, "messages_unacknowledged": 1, "consumers": 2,
         "type": "quorum", "leader": NODES[1], "members": NODES, "online": NODES},
        {"name": "service_b", "messages_ready": 0, "messages_unacknowledged": 0, "consumers": 2,
         "type": "quorum", "leader": NODES[0], "members": NODES, "online": NODES[:1]},
        {"name": "dead_letter", "messages_ready": 0, "messages_unacknowledged": 0, "consumers": 0,
         "type": "classic", "leader": "", "members": "", "online": ""},  # on 3.10
        {"name": "service_c", "messages_ready": 0, "messages_unacknowledged": 0, "consumers": 0,
         "type": "classic", "leader": NODES[0], "members": NODES[:1], "online": ""},  # on 4.0
    ]  # fmt: skip
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(queues)}\nEOF\n")
    script.chmod(0o755)
    result = run_watch("--count", "1", MANAGEMENT_URL=CLOSED, RABBITMQCTL=str(script))
    assert result.returncode == 0, result.stderr
    assert "consumers  change/s  online  leader\n" in result.stdout
    assert rows(result.stdout, "service_a") == [["7", "1", "2", "-", "3/3", NODES[1]]]
    assert rows(result.stdout, "service_b") == [["0", "0", "2", "-", "1/3", NODES[0]]]
    assert rows(result.stdout, "dead_letter") == [["0", "0", "0", "-", "-", "-"]]
    assert rows(result.stdout, "service_c") == [["0", "0", "0", "-", "-", "-"]]


@pytest.mark.parametrize(
    ("status", "why"),
    [(None, "Connection refused"), (401, "HTTP 401: it refused the user and password")],
)
def test_rabbitmqctl_when_the_api_does_not_answer(
    api_with, fake_rabbitmqctl: str, tmp_path: Path, status: int | None, why: str
) -> None:
    management_url = CLOSED if status is None else api_with([], status).url
    result = run_watch(
        "--count",
        "3",
        "--interval",
        "0.2",
        AMQP_URL=URL,
        MANAGEMENT_URL=management_url,
        RABBITMQCTL=fake_rabbitmqctl,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"queues of virtual host 'my/vhost' from {fake_rabbitmqctl}, every 0.2 s" in out
    assert f"(not the management API at {management_url}: {why}" in out
    assert "consumers  change/s\n" in out and "in/s" not in out
    figures = rows(out, "service_a")
    assert [f[:3] for f in figures] == [["10", "20", "2"], ["20", "20", "2"], ["30", "20", "2"]]
    assert figures[0][3] == "-"
    assert all(float(f[3]) > 0 for f in figures[1:])  # the backlog grows
    calls = (tmp_path / "calls").read_text().splitlines()
    expected = "--node rabbit@fake list_queues -p my/vhost name messages_ready "
    expected += "messages_unacknowledged consumers type leader members online --formatter json"
    assert calls == [expected] * 3


def test_neither_source_answers(tmp_path: Path) -> None:
    result = run_watch(MANAGEMENT_URL=CLOSED, RABBITMQCTL=str(tmp_path / "rabbitmqctl"))
    assert_one_line_error(
        result,
        1,
        f"the management API at {CLOSED}: Connection refused",
        "rabbitmqctl: command not found",
        "check AMQP_URL, MANAGEMENT_URL and RABBITMQCTL",
    )


def test_a_failing_rabbitmqctl_gives_its_last_line(tmp_path: Path) -> None:
    script = tmp_path / "rabbitmqctl"
    script.write_text(
        "#!/bin/sh\necho 'Error:' >&2\necho 'unable to connect to node' >&2\nexit 69\n"
    )
    script.chmod(0o755)
    result = run_watch(MANAGEMENT_URL=CLOSED, RABBITMQCTL=str(script))
    assert_one_line_error(result, 1, "exit code 69: unable to connect to node")


# -- usage -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--interval", "0"], {}, "argument --interval: '0' is not a number of seconds"),
        (["--interval", "x"], {}, "argument --interval: 'x' is not a number of seconds"),
        (["--count", "0"], {}, "argument --count: '0' is not a whole number of at least 1"),
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
        ([], {"MANAGEMENT_URL": "ftp://x"}, "MANAGEMENT_URL='ftp://x' is not valid"),
        (
            [],
            {"MANAGEMENT_URL": "http://u:secret@localhost"},
            "MANAGEMENT_URL='http://u:***@localhost' is not valid",
        ),
        ([], {"RABBITMQCTL": "docker 'compose"}, 'RABBITMQCTL="docker \'compose" is not valid'),
        ([], {"AMQP_URL": "nonsense"}, "AMQP_URL='nonsense' is not valid"),
    ],
)
def test_bad_usage_is_one_line(args: list[str], env: dict[str, str], words: str) -> None:
    assert_one_line_error(run_watch(*args, **env), 2, words, "python -m tools.watch: ")


def test_depth_changes_are_signed_rates_per_second() -> None:
    before = {"service_a": QueueStats(100, 20, 1), "service_b": QueueStats(0, 0, 1)}
    after = {"service_a": QueueStats(80, 20, 1), "service_b": QueueStats(30, 10, 1)}
    block = render("12:00:00", ["service_a", "service_b"], after, [(10.0, before)], 12.0)
    assert block.splitlines() == [
        "12:00:00  queue         ready  unacked  consumers  change/s",
        "          service_a        80       20          1     -10.0",
        "          service_b        30       10          1     +20.0",
    ]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Counting:
    """A Source whose depth of service_a goes up by one on every sample."""

    description = "a test source"

    def __init__(self) -> None:
        self.depth = 0

    def sample(self) -> dict[str, QueueStats]:
        self.depth += 1
        return {"service_a": QueueStats(self.depth, 0, 1)}


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_on_a_terminal_each_sample_replaces_the_last(terminal: bool) -> None:
    out = Terminal() if terminal else io.StringIO()
    source = Counting()
    watch(source, source.sample(), ["service_a"], interval=0.01, count=3, out=out)
    text = out.getvalue()
    blocks = 3
    lines_per_block = 3  # a blank line, the header, the row
    if terminal:
        assert text.count(f"\x1b[{lines_per_block}F\x1b[J") == blocks - 1
    else:
        assert "\x1b[" not in text
    assert [row[0] for row in rows(text, "service_a")] == ["1", "2", "3"]


class Partitioned(Counting):
    """service_b's two partitions, each held by a replica."""

    def sample(self) -> dict[str, QueueStats]:
        return {f"service_b.{n}": QueueStats(n, 0, 3) for n in (0, 1)}

    def holders(self) -> dict[str, str]:
        return {"service_b.0": "service_b@r-2", "service_b.1": "service_b@r-1"}


def test_in_keyed_mode_it_lists_the_partitions_and_who_holds_each() -> None:
    settings = WatchSettings.from_env(Env({"ORDERING": "keyed", "PARTITIONS": "2"}))
    assert settings.keyed
    assert settings.queues[:3] == ("service_a.0", "service_a.1", "service_b.0")
    assert settings.queues[-1] == "dead_letter"
    out = io.StringIO()
    source = Partitioned()
    watch(
        source,
        take(source, keyed=True),
        settings.queues,
        interval=0.01,
        count=1,
        out=out,
        keyed=True,
    )
    text = out.getvalue()
    assert "held by" in text.splitlines()[1]
    assert rows(text, "service_b.0")[0][-1] == "service_b@r-2"
    assert rows(text, "service_b.1")[0][-1] == "service_b@r-1"
