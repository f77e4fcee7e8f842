"""docker-compose.yml run for real, without Docker: each service as a local process.

Each service's resolved `command` and `environment` start a local process against the test
broker, exactly as the container would get them and nothing else (`Proc(inherit=False)`), so a
wrong queue name, next queue, command or missing variable fails here as it would break
`docker compose up`. The broker is seeded as compose seeds its own (`harness.access`): each
service logs in as its role's user, with only that user's rights, reading its password from a
file as from its secret volume, and takes messages only from the user its ACCEPT_FROM names.
The test's users carry the vhost's name before the role's, so both are rewritten to them.
Compose's connections are TLS (amqps://, rediss://, each trusting the CA beside the password):
checked as given, then dialled in clear against the test's broker and Redis, which have no
TLS port (test_tls.py runs the pipeline over TLS; `make test-docker` runs compose's).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from common.topology import STAGES
from harness.access import AccessVhost
from harness.broker import with_vhost
from harness.processes import Proc, wait_for
from harness.store import StoreKeys, StoreUsers
from tests.unit.test_compose_file import BROKER, CONSUMERS, DRAIN_TIMEOUT, STORE, compose_config

SECRET_DIR = "/run/secrets/rabbithole"  # where each app's own secret volume is mounted


@pytest.fixture
def vhost(base_url: str) -> Iterator[AccessVhost]:
    vhost = AccessVhost(base_url)
    yield vhost
    vhost.delete()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()


def local_command(command: list[str]) -> list[str]:
    assert command[0] == "python", command
    return [sys.executable, *command[1:]]


def local_login(name: str, service: dict, vhost: AccessVhost, secrets: Path) -> dict[str, str]:
    """The service's login, checked as compose gives it (its role's user in AMQP_URL, no
    password there, the password in its own secret volume), pointed at the test's broker, vhost
    and users; its ACCEPT_FROM, if any, as the test's user of that role."""
    environment = service["environment"]
    parts = urlsplit(environment["AMQP_URL"])
    assert parts.hostname == BROKER, f"AMQP_URL must name the broker service: {parts.geturl()}"
    assert parts.scheme == "amqps" and parts.port == 5671, parts.geturl()
    assert (parts.username, parts.password) == (name, None), f"{name}: its own user, no password"
    assert environment["AMQP_PASSWORD_FILE"] == f"{SECRET_DIR}/password", name
    assert environment["AMQP_CA_FILE"] == f"{SECRET_DIR}/ca.pem", name
    mounts = {v["target"]: v["source"] for v in service.get("volumes", [])}
    assert mounts.get(SECRET_DIR) == f"secrets-{name}", f"{name} mounts its own secret volume"
    password = secrets / name / "password"
    password.parent.mkdir(parents=True)
    password.write_text(vhost.password_of(name) + "\n")
    broker = urlsplit(vhost.url).netloc.rsplit("@", 1)[-1]
    netloc = f"{vhost.role(name).user}@{broker}"
    login = {
        "AMQP_URL": with_vhost(
            urlunsplit(parts._replace(scheme="amqp", netloc=netloc)), vhost.name
        ),
        "AMQP_PASSWORD_FILE": str(password),
        "AMQP_CA_FILE": "",  # the test's broker speaks no TLS
    }
    if "ACCEPT_FROM" in environment:
        login["ACCEPT_FROM"] = vhost.role(environment["ACCEPT_FROM"]).user
    return login


def local_store(environment: dict[str, str], users: StoreUsers) -> dict[str, str]:
    """A service's STORE_URL (last's), checked as compose gives it (the store's user `last`, its
    password from the same secret as its broker login), pointed at the test's Redis, keys and
    ACL user; {} if it has none."""
    if "STORE_URL" not in environment:
        return {}
    parts = urlsplit(environment["STORE_URL"])
    assert parts.hostname == STORE, f"STORE_URL must name the store service: {parts.geturl()}"
    assert parts.scheme == "rediss" and parts.port == 6379, parts.geturl()
    assert (parts.username, parts.password) == ("last", None), parts.geturl()
    assert environment["STORE_PASSWORD_FILE"] == f"{SECRET_DIR}/password"
    assert environment["STORE_CA_FILE"] == f"{SECRET_DIR}/ca.pem"
    return {
        **users.keys.env,
        "STORE_URL": users.url("last", password=False),
        "STORE_CA_FILE": "",  # the test's Redis speaks no TLS
        "STORE_PASSWORD_FILE": environment["AMQP_PASSWORD_FILE"],  # the local copy of it
    }


def fail_if_exited(procs: Sequence[Proc]) -> None:
    for proc in procs:
        code = proc.poll()
        if code is not None:
            raise AssertionError(f"{proc.name} exited with {code}:\n{proc.tail()}")


@pytest.fixture
def store_users(vhost: AccessVhost, store: StoreKeys) -> Iterator[StoreUsers]:
    """The store's ACL users, with the passwords of the vhost's users of the same roles."""
    users = StoreUsers(store, {role: vhost.password_of(role) for role in ("last", "monitor")})
    yield users
    users.delete()


def test_compose_wiring_carries_every_message_through_the_pipeline(
    compose_bin: str,
    vhost: AccessVhost,
    store_users: StoreUsers,
    procs: list[Proc],
    tmp_path: Path,
) -> None:
    count = 300
    env_file = tmp_path / "test.env"
    env_file.write_text("")
    services = compose_config(compose_bin, env_file)["services"]
    logins = {
        name: local_login(name, services[name], vhost, tmp_path / "secrets")
        for name in ("first", *STAGES, "last")
    }
    overrides = {  # for speed; everything else is exactly as the compose file resolves it
        "first": {"NUMBER_OF_MESSAGES": str(count)},
        "service_a": {"RANDOM_WAIT_MIN": "0", "RANDOM_WAIT_MAX": "0"},
        "service_b": {"RANDOM_WAIT_MIN": "0", "RANDOM_WAIT_MAX": "0"},
        "service_c": {"RANDOM_WAIT_MIN": "0", "RANDOM_WAIT_MAX": "0"},
        "last": {"EXPECTED_MESSAGES": str(count)},
    }

    def start(name: str, replica: int = 1) -> Proc:
        service = services[name]
        # A variable the file passes on without a value (OTEL_EXPORTER_OTLP_ENDPOINT) is unset
        # in the container when unset here, as Compose leaves it.
        environment = {k: v for k, v in (service.get("environment") or {}).items() if v is not None}
        # Each container has METRICS_PORT to itself; processes on one machine cannot share it.
        environment.update(logins[name], LOG_FORMAT="json", METRICS_PORT="0")
        environment.update(local_store(environment, store_users))
        environment.update(overrides[name])
        command = local_command(service["command"])
        proc = Proc(command, tmp_path, f"{name}-{replica}", environment, inherit=False)
        procs.append(proc)
        return proc

    last = start("last")
    consumers = [last, start("service_a"), start("service_b", 1), start("service_b", 2)]
    consumers.append(start("service_c"))

    def all_consuming() -> bool:
        fail_if_exited(consumers)
        return all(proc.messages("consuming") for proc in consumers)

    wait_for(all_consuming, 30, "every consumer to start consuming")
    for proc in consumers:
        [record] = proc.messages("consuming")
        assert record["queue"] == CONSUMERS[proc.name.rsplit("-", 1)[0]], proc.name

    first = start("first")
    assert first.wait(60) == 0, first.tail()

    def last_exited() -> bool:
        fail_if_exited([proc for proc in consumers if proc is not last])
        return not last.running

    try:
        wait_for(last_exited, 60, f"last to complete {count} messages")
    except AssertionError as error:
        raise AssertionError(f"{error}; last's output:\n{last.tail()}") from None
    assert last.exit_code == 0, last.tail()

    completed = last.messages("completed")
    seqs = sorted(int(record["history"][0].removeprefix("seq-")) for record in completed)
    assert seqs == list(range(1, count + 1))
    assert len({record["broker_message_id"] for record in completed}) == count
    for record in completed:
        assert tuple(record["history"][1:]) == STAGES, record
    [summary] = last.messages("summary")
    assert (summary["completed"], summary["duplicates"]) == (count, 0)
    assert set(store_users.keys.records()) == {record["broker_message_id"] for record in completed}
    assert vhost.depth("dead_letter") == 0

    # `docker compose stop` sends SIGTERM: idle consumers drain and exit 0 well within the
    # stop_grace_period.
    running = [proc for proc in consumers if proc is not last]
    for proc in running:
        proc.signal(signal.SIGTERM)
    for proc in running:
        assert proc.wait(DRAIN_TIMEOUT) == 0, proc.tail()
        assert proc.stderr() == "", proc.name
