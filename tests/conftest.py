from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest

from common.settings import redact_url
from tests.support import PIPELINE, Proc, Vhost, broker_url

StartProc = Callable[..., Proc]


@pytest.fixture(scope="session")
def base_url() -> str:
    """The broker the integration tests use; without one, stop with one line saying what to do."""
    url = broker_url()
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except pika.exceptions.AMQPError as error:
        pytest.exit(
            f"no RabbitMQ broker lets us in at {redact_url(url)} ({type(error).__name__}): "
            "start one with `rabbitmq-server -detached`, or `docker compose up -d rabbitmq` and "
            "set AMQP_URL=amqp://rabbithole:rabbithole@localhost:5672/%2F "
            "RABBITMQCTL='docker compose exec -T rabbitmq rabbitmqctl'",
            returncode=3,
        )
    return url


@pytest.fixture
def vhost(base_url: str) -> Iterator[Vhost]:
    vhost = Vhost(base_url)
    yield vhost
    vhost.delete()


@pytest.fixture
def start(vhost: Vhost, tmp_path: Path) -> Iterator[StartProc]:
    """Start `python -m MODULE` against the test's vhost; every process is killed at the end."""
    procs: list[Proc] = []

    def start_proc(module: str, name: str | None = None, **env: object) -> Proc:
        name = name or module
        full_env = {"AMQP_URL": vhost.url, **{k: str(v) for k, v in env.items()}}
        proc = Proc(module, full_env, tmp_path, f"{name}-{len(procs)}")
        procs.append(proc)
        return proc

    yield start_proc
    for proc in procs:
        proc.stop()


@pytest.fixture
def start_services(start: StartProc) -> Callable[..., dict[str, Proc]]:
    """Start service_a, service_b and service_c, each with the same extra environment."""

    def start_all(**env: object) -> dict[str, Proc]:
        return {
            queue: start("service", queue, RABBITMQ_QUEUE=queue, RABBITMQ_NEXT_QUEUE=nxt, **env)
            for queue, nxt in PIPELINE.items()
        }

    return start_all
