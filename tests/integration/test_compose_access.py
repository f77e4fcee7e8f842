"""docker-compose.yml run for real in Docker with its users and TLS (skipped where Docker does
not answer, like the other docker tests).

The broker must start with the users `provision` made and no other (no guest), listen for AMQP
over TLS alone, every app log in as its own user over TLS, and the demo complete with every
check on and nothing dead-lettered. From the host, the published ports speak TLS, and a client
that trusts the CA `provision --show ca` prints gets in. The management API lets the operator
in, and no app user. After `provision --rotate all` (passwords, and the CA with every
certificate) and a re-create, every process logs in with its new password over the new
certificates, the old passwords are refused, the old CA no longer verifies the broker, and a
second run completes too.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from common.nodes import url_parameters
from common.refusals import open_refusal
from common.tls import handshake_answer
from harness.cluster_demo import NODES
from harness.compose_demo import Compose, check_outcome, check_tls, wait_for, wait_for_completions
from harness.docker_broker import docker_available
from provision.roles import pipeline_roles
from tests.integration.test_observability_compose import free_port
from tests.unit.test_compose_file import BROKER

pytestmark = pytest.mark.docker

MESSAGES = 100
USERS = {role.user for role in pipeline_roles()}
CONSUMERS = {"service_a", "service_b", "service_c", "last"}
MANAGED = ("RABBITMQ", "RABBITMQ_2", "RABBITMQ_3")  # each node's management port on the host


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    if not docker_available():
        pytest.skip("no Docker engine answers: the compose file's users are tried in Docker")
    env = {
        name: str(free_port())
        for name in ("RABBITMQ_AMQPS_PORT", "RABBITMQ_MANAGEMENT_PORT", "STORE_PORT")
    }
    env["NUMBER_OF_MESSAGES"] = str(MESSAGES)
    compose = Compose(f"rhtest-access-{secrets.token_hex(3)}", ["docker-compose.yml"], env)
    try:
        compose.fresh_up()
        yield compose
    finally:
        compose("down", "--volumes", "--remove-orphans", timeout=180, check=False)


def password(compose: Compose, role: str) -> str:
    return compose("run", "--rm", "-T", "provision", "--show", role).strip()


def amqp_refusal(compose: Compose, role: str, secret: str, ca: Path) -> str | None:
    """None if `role`'s user may log in with `secret` from the host, over TLS, trusting the CA
    in `ca`; else the one line a process would end with."""
    url = f"amqps://{role}:{secret}@localhost:{compose.env['RABBITMQ_AMQPS_PORT']}/%2F"
    parameters = url_parameters(url, str(ca))
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
    except (pika.exceptions.AMQPError, OSError) as error:  # an ssl.SSLError is an OSError
        refusal = open_refusal(error, url.replace(secret, "***"))
        return str(refusal) if refusal else f"not a refusal: {error!r}"
    return None


def show_ca(compose: Compose, directory: Path) -> Path:
    path = directory / f"ca-{secrets.token_hex(3)}.pem"
    path.write_text(compose("run", "--rm", "-T", "provision", "--show", "ca"))
    return path


def management_status(compose: Compose, role: str, secret: str) -> int:
    """The management API's answer to `role`'s user asking who it is."""
    port = compose.env["RABBITMQ_MANAGEMENT_PORT"]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/whoami")
    token = base64.b64encode(f"{role}:{secret}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def logged_in(compose: Compose) -> set[str]:
    output = compose.rabbitmqctl(BROKER, "list_connections", "user", "--formatter", "json")
    return {connection["user"] for connection in json.loads(output)}


def test_every_app_logs_in_as_its_own_user_and_rotation_locks_the_old_passwords_out(
    compose: Compose, tmp_path: Path
) -> None:
    seen = wait_for_completions(compose, MESSAGES, f"{MESSAGES} completions")
    check_outcome(compose, MESSAGES, seen)
    users = json.loads(compose.rabbitmqctl(BROKER, "list_users", "--formatter", "json"))
    assert {user["user"] for user in users} == USERS  # no guest, no default user
    # first has exited; the broker may list a closed connection for a few seconds more (seen
    # here up to 30 s on RabbitMQ 4.0 over TLS).
    wait_for(lambda: logged_in(compose) == CONSUMERS, 60, "only the consumers to be logged in")
    check_tls(compose)  # no plain AMQP port; every app connected over TLS
    for port in ("RABBITMQ_AMQPS_PORT", "STORE_PORT"):  # what the host reaches speaks TLS
        assert handshake_answer("127.0.0.1", int(compose.env[port])) is True, port
    old_ca = show_ca(compose, tmp_path)
    admin = password(compose, "admin")
    assert management_status(compose, "admin", admin) == 200
    assert management_status(compose, "service_a", password(compose, "service_a")) == 401
    assert management_status(compose, "guest", "guest") == 401

    before = {role: password(compose, role) for role in ("service_b", "admin")}
    compose("run", "--rm", "-T", "provision", "--rotate", "all")
    after = {role: password(compose, role) for role in before}
    assert all(after[role] != before[role] for role in before)
    compose("up", "--detach", "--force-recreate", timeout=300)
    seen = wait_for_completions(compose, MESSAGES, f"{MESSAGES} completions after the rotation")
    check_outcome(compose, MESSAGES, seen)
    check_tls(compose)
    new_ca = show_ca(compose, tmp_path)
    assert new_ca.read_text() != old_ca.read_text()
    assert "refused the login" in str(
        amqp_refusal(compose, "service_b", before["service_b"], new_ca)
    )
    assert amqp_refusal(compose, "service_b", after["service_b"], new_ca) is None
    assert "not signed by a CA this process trusts" in str(
        amqp_refusal(compose, "service_b", after["service_b"], old_ca)
    )
    assert management_status(compose, "admin", before["admin"]) == 401


def test_the_cluster_file_runs_over_tls_under_compose_1_29() -> None:
    """The same files with `docker-compose` 1.29 (Debian 12's, Ubuntu 22.04's): three nodes,
    each on TLS alone with its own certificate, every app over TLS, the demo complete."""
    legacy = shutil.which("docker-compose")
    if legacy is None or not docker_available():
        pytest.skip("needs Docker and docker-compose 1.29 (`apt-get install docker-compose`)")
    names = ("RABBITMQ_AMQPS_PORT", "STORE_PORT", *(f"{n}_MANAGEMENT_PORT" for n in MANAGED))
    env = {name: str(free_port()) for name in names} | {"NUMBER_OF_MESSAGES": str(MESSAGES)}
    files = ["docker-compose.yml", "docker-compose.cluster.yml"]
    compose = Compose(f"rhtest-legacy-{secrets.token_hex(3)}", files, env, binary=(legacy,))
    try:
        compose.fresh_up()
        seen = wait_for_completions(compose, MESSAGES, f"{MESSAGES} completions")
        assert sorted(seen) == sorted(f"seq-{n}" for n in range(1, MESSAGES + 1))
        assert all(len(ids) == 1 for ids in seen.values()), seen
        check_tls(compose, NODES)
    finally:
        compose("down", "--volumes", "--remove-orphans", timeout=180, check=False)
