"""docker-compose.yml run for real in Docker with its users (skipped where Docker does not
answer, like the other docker tests).

The broker must start with the users `provision` made and no other (no guest), every app log in
as its own user, and the demo complete with every check on and nothing dead-lettered. The
management API lets the operator in, and no app user. After `provision --rotate all` and a
re-create, every process logs in with its new password, the old ones are refused, and a
second run completes too.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator

import pika
import pika.exceptions
import pytest

from harness.compose_demo import Compose, check_outcome, wait_for_completions
from harness.docker_broker import docker_available
from provision.roles import pipeline_roles
from tests.integration.test_observability_compose import free_port
from tests.unit.test_compose_file import BROKER

pytestmark = pytest.mark.docker

MESSAGES = 100
USERS = {role.user for role in pipeline_roles()}
CONSUMERS = {"service_a", "service_b", "service_c", "last"}


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    if not docker_available():
        pytest.skip("no Docker engine answers: the compose file's users are tried in Docker")
    env = {
        name: str(free_port())
        for name in ("RABBITMQ_AMQP_PORT", "RABBITMQ_MANAGEMENT_PORT", "STORE_PORT")
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


def amqp_refusal(compose: Compose, role: str, secret: str) -> int | None:
    """None if `role`'s user may log in with `secret` from the host, else the broker's code."""
    port = int(compose.env["RABBITMQ_AMQP_PORT"])
    credentials = pika.PlainCredentials(role, secret)
    parameters = pika.ConnectionParameters("127.0.0.1", port, credentials=credentials)
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
    except pika.exceptions.ProbableAuthenticationError:
        return 403
    return None


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
    compose: Compose,
) -> None:
    seen = wait_for_completions(compose, MESSAGES, f"{MESSAGES} completions")
    check_outcome(compose, MESSAGES, seen)
    users = json.loads(compose.rabbitmqctl(BROKER, "list_users", "--formatter", "json"))
    assert {user["user"] for user in users} == USERS  # no guest, no default user
    assert logged_in(compose) == CONSUMERS  # first has exited
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
    assert amqp_refusal(compose, "service_b", before["service_b"]) == 403
    assert amqp_refusal(compose, "service_b", after["service_b"]) is None
    assert management_status(compose, "admin", before["admin"]) == 401
