"""What every test shares: its marker (from its folder), the broker, a vhost, processes.

- tests/unit: no broker, no network; the whole set runs in seconds (`make test-unit`).
- tests/integration: the real processes and the real broker at AMQP_URL.
- tests/faults: the pipeline under faults (kills, outages, bad input at volume, spikes).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.settings import redact_url
from common.topology import STAGES, following_queue
from harness.broker import Vhost, broker_url, refusal
from harness.docker_broker import (
    SHARED,
    DockerBroker,
    DockerUnavailable,
    docker_available,
    new_identity,
    shared_identity,
)
from harness.processes import Launcher, Proc
from harness.store import StoreKeys, answers

StartProc = Callable[..., Proc]
TESTS = Path(__file__).resolve().parent
KINDS = ("unit", "integration", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the folder it lives in: `pytest -m unit` is the quick loop."""
    for item in items:
        kind = item.path.relative_to(TESTS).parts[0]
        if kind in KINDS:
            item.add_marker(kind)


def parallel_controller(config: pytest.Config) -> bool:
    """This process runs pytest-xdist's workers (`-n N`) rather than tests."""
    return bool(config.getoption("numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    """A parallel run names its throwaway broker before its workers start (they inherit the
    environment), so that the workers share one container if they need one."""
    if parallel_controller(config):
        os.environ[SHARED] = new_identity()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Every worker is done: the parallel run's throwaway broker goes, if one was started."""
    identity = os.environ.pop(SHARED, None)
    if identity and parallel_controller(config):
        broker = DockerBroker(identity=identity)
        broker.stop()
        lock_file(broker.name).unlink(missing_ok=True)


def say(config: pytest.Config, line: str) -> None:
    """One line on the terminal, whatever pytest captures (a fixture's print shows only when a
    test fails; a parallel run's worker has no terminal of its own, but its stderr's)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(line, file=sys.stderr)
        return
    with capture.global_and_fixture_disabled():
        if reporter is None or hasattr(config, "workerinput"):
            print(line, file=sys.stderr)
        else:
            reporter.write_line(line)


def lock_file(name: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{name}.lock"


@contextlib.contextmanager
def exclusive(name: str) -> Iterator[None]:
    """One process at a time in the block, among all that use `name` (a file lock in /tmp)."""
    with lock_file(name).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def base_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """The broker the integration tests use: AMQP_URL's, or else a throwaway one in Docker;
    without either, stop with one line saying what to do."""
    url = broker_url()
    problem = refusal(url)
    if problem is None:
        yield url
        return
    if not docker_available():
        pytest.exit(
            f"no RabbitMQ broker lets us in at {redact_url(url)} ({problem}) and no Docker "
            "engine answers: start one with `rabbitmq-server -detached`, or start Docker (the "
            "tests then run a throwaway broker), or set AMQP_URL and RABBITMQCTL to a broker "
            "of yours (see the README's Tests section)",
            returncode=3,
        )
    shared = shared_identity()  # a parallel run's, which its first worker starts
    broker = DockerBroker(identity=shared)
    try:
        with exclusive(broker.name) if shared else contextlib.nullcontext():
            if not (shared and broker.attach()):
                say(
                    pytestconfig,
                    f"\nno broker at {redact_url(url)} ({problem}): running a throwaway "
                    f"{broker.image} in Docker ({broker.name}) for these tests; it is removed "
                    "at the end",
                )
                broker.start()
    except DockerUnavailable as error:
        broker.stop()
        pytest.exit(f"could not start a throwaway broker in Docker: {error}", returncode=3)
    saved = {name: os.environ.get(name) for name in ("AMQP_URL", "RABBITMQCTL")}
    broker.use()
    try:
        yield broker.url
    finally:
        if not shared:  # a shared one outlives this worker: the run removes it at its end
            broker.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def vhost(base_url: str) -> Iterator[Vhost]:
    vhost = Vhost(base_url)
    yield vhost
    vhost.delete()


@pytest.fixture
def start(vhost: Vhost, tmp_path: Path) -> Iterator[StartProc]:
    """Start `python -m MODULE` against the test's vhost; every process is killed at the end."""
    # last keeps ids in memory unless the test gives it a store: a STORE_URL in the
    # developer's shell never reaches it.
    launcher = Launcher(tmp_path, AMQP_URL=vhost.url, LOG_FORMAT="json", STORE_URL="")
    yield launcher
    launcher.kill_all()


@pytest.fixture
def store() -> Iterator[StoreKeys]:
    """Keys of the test's own on the Redis at STORE_URL (127.0.0.1:6379 by default)."""
    keys = StoreKeys()
    if not answers(keys.url):
        pytest.fail(
            f"no Redis answers at {redact_url(keys.url)}: start one (`redis-server --daemonize "
            "yes`) or set STORE_URL to yours"
        )
    yield keys
    keys.delete()


@pytest.fixture
def start_services(start: StartProc) -> Callable[..., dict[str, Proc]]:
    """Start service_a, service_b and service_c, each with the same extra environment."""

    def start_all(**env: object) -> dict[str, Proc]:
        return {
            queue: start(
                "service",
                queue,
                RABBITMQ_QUEUE=queue,
                RABBITMQ_NEXT_QUEUE=following_queue(queue),
                **env,
            )
            for queue in STAGES
        }

    return start_all


@pytest.fixture(scope="session")
def compose_bin() -> str:
    path = os.path.expanduser(
        os.environ.get("COMPOSE_BIN") or "~/.docker/cli-plugins/docker-compose"
    )
    if not os.access(path, os.X_OK):
        pytest.skip(f"docker compose not found at {path}: run `make compose-bin` to install it")
    return path
