"""A virtual host seeded as compose seeds its broker: a user per role with only its rights
(`provision.roles`, `provision.definitions`), imported with `rabbitmqctl import_definitions`,
and the pipeline's queues declared by the operator (`provision.topology`). The users' names
start with the vhost's own, so that they never meet another run's; `delete()` removes the vhost
and every one of them.

The test's own user (guest, on the shared broker) keeps every right on the vhost, to look.
The vhost, the users and their rights come in one import, and the users go in one command:
each `rabbitmqctl` starts an Erlang VM, a second of CPU on a busy two-core machine.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from common.settings import BrokerSettings, Env
from harness.broker import (
    CTL_TIMEOUT_S,
    Vhost,
    broker_url,
    rabbitmqctl,
    rabbitmqctl_command,
    unique_name,
    with_vhost,
)
from provision.definitions import definitions
from provision.roles import Role, pipeline_roles
from provision.topology import declare_pipeline


class AccessVhost(Vhost):
    """A vhost whose pipeline runs with a user per role; `broker_env` shapes its queues as the
    processes' environment would (ORDERING=keyed, say)."""

    def __init__(  # no super().__init__: the import makes the vhost
        self, base_url: str | None = None, broker_env: Mapping[str, str] | None = None
    ) -> None:
        base_url = base_url or broker_url()
        self.name = unique_name("access")
        self.url = with_vhost(base_url, self.name)
        self.roles = {role.role: role for role in pipeline_roles(prefix=f"{self.name}-")}
        self._passwords = {role: secrets.token_urlsafe(24) for role in self.roles}
        document = definitions(list(self.roles.values()), self._passwords, self.name)
        own = {"user": urlsplit(base_url).username or "guest", "vhost": self.name}
        document["permissions"].append({**own, "configure": ".*", "write": ".*", "read": ".*"})
        subprocess.run(
            [*rabbitmqctl_command(), "import_definitions", "--format", "json"],
            input=json.dumps(document),
            check=True,
            capture_output=True,
            text=True,
            timeout=CTL_TIMEOUT_S,
        )
        declare_pipeline(self.url, BrokerSettings.from_env(Env(broker_env or {})))

    def role(self, name: str) -> Role:
        return self.roles[name]

    def password_of(self, role: str) -> str:
        return self._passwords[role]

    def url_of(self, role: str) -> str:
        """This vhost's URL, logged in as `role`'s user with its password."""
        parts = urlsplit(self.url)
        user = self.roles[role].user
        netloc = f"{user}:{self._passwords[role]}@{parts.hostname}:{parts.port or 5672}"
        return urlunsplit(parts._replace(netloc=netloc))

    def env_of(self, role: str) -> dict[str, str]:
        """What compose gives `role`'s process: its own login, only its own queues declared,
        and the one sender it accepts."""
        env = {"AMQP_URL": self.url_of(role), "DECLARE_QUEUES": "own"}
        if self.roles[role].accept_from:
            env["ACCEPT_FROM"] = self.roles[role].accept_from
        return env

    def delete(self) -> None:
        super().delete()
        # rabbitmqctl deletes one user per call; the broker's own function, all in one (names
        # are letters, digits, - and _), else one call each.
        users = ", ".join(f'<<"{role.user}">>' for role in self.roles.values())
        remove = (
            f'[catch rabbit_auth_backend_internal:delete_user(U, <<"tests">>) || U <- [{users}]]'
        )
        try:
            rabbitmqctl("eval", f"{remove}, ok.")
        except (subprocess.SubprocessError, OSError):
            for role in self.roles.values():
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    rabbitmqctl("delete_user", role.user)
