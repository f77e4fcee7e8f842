"""The rights of each role (`provision.roles`): anchored, the least each job needs, a chain of
senders that follows the pipeline. The broker's answers to them are tried in
tests/integration/test_access.py."""

from __future__ import annotations

import re

from common.settings import BrokerSettings, Env
from provision.definitions import definitions
from provision.roles import NOTHING, pipeline_roles
from provision.topology import pipeline_queues


def test_every_pattern_is_anchored_and_compiles() -> None:
    for role in pipeline_roles():
        for pattern in (role.configure, role.write, role.read):
            assert pattern.startswith("^") and pattern.endswith("$"), (role.role, pattern)
            re.compile(pattern)


def test_each_stage_reads_and_configures_its_own_input_and_partitions_only() -> None:
    roles = {role.role: role for role in pipeline_roles()}
    mine = re.compile(roles["service_b"].read)
    assert all(mine.match(q) for q in ("service_b", "service_b.0", "service_b.63"))
    others = (
        "service_a",
        "service_c",
        "service_b_copy",
        "xservice_b",
        "service_b.x",
        "dead_letter",
    )
    assert not any(mine.match(q) for q in others)
    assert roles["service_b"].configure == roles["service_b"].read
    assert re.fullmatch(roles["service_b"].write, "amq.default")
    assert not re.match(roles["service_b"].write, "amq.direct")


def test_each_consumer_accepts_the_user_of_the_stage_before_it() -> None:
    roles = pipeline_roles(prefix="p-")
    chain = [(role.role, role.accept_from) for role in roles if role.accept_from]
    assert chain == [
        ("service_a", "p-first"),
        ("service_b", "p-service_a"),
        ("service_c", "p-service_b"),
        ("last", "p-service_c"),
    ]


def test_only_the_tools_and_the_operator_may_use_the_management_api() -> None:
    """The management API lets in no user without a tag."""
    tags = {role.role: role.tags for role in pipeline_roles()}
    assert tags.pop("monitor") == ("monitoring",) and tags.pop("admin") == ("administrator",)
    assert set(tags.values()) == {()}
    monitor = next(role for role in pipeline_roles() if role.role == "monitor")
    assert (monitor.configure, monitor.write, monitor.read) == (NOTHING, NOTHING, NOTHING)


def test_the_definitions_hold_no_password() -> None:
    roles = pipeline_roles()
    passwords = {role.role: f"secret-{role.role}" for role in roles}
    document = definitions(roles, passwords, "/")
    assert "secret-" not in repr(document)
    assert [user["name"] for user in document["users"]] == [role.user for role in roles]


def test_the_pipelines_queues_have_the_shape_configured() -> None:
    broker = BrokerSettings.from_env(Env({"ORDERING": "keyed", "PARTITIONS": "2"}))
    assert pipeline_queues(broker)[:2] == ("service_a.0", "service_a.1")
    assert pipeline_queues(broker)[-1] == "dead_letter"
    assert len(pipeline_queues(broker)) == 4 * 2 + 1
