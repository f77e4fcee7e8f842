"""The broker's definitions: its users, their rights and its virtual host, as one JSON document
that RabbitMQ imports (at every boot, as compose has it, or `rabbitmqctl import_definitions`, as
the tests do). The queues are declared by `provision.topology` once every node is up.

When definitions are imported at boot, RabbitMQ creates no default user: `guest` does not
exist. A password is stored only as RabbitMQ's own salted hash (`rabbit_password_hashing_sha256`:
base64 of a 4-byte salt and SHA-256 of salt + password), so the file gives no one a password to
log in with.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping, Sequence

from provision.roles import Role

HASHING = "rabbit_password_hashing_sha256"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's stored form of `password` (a fresh random salt unless given)."""
    salt = secrets.token_bytes(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(
    roles: Sequence[Role], passwords: Mapping[str, str], vhost: str
) -> dict[str, object]:
    """The definitions of `roles` (each with its password in `passwords`, by role) on
    `vhost`."""
    return {
        "users": [
            {
                "name": role.user,
                "password_hash": password_hash(passwords[role.role]),
                "hashing_algorithm": HASHING,
                "tags": list(role.tags),
            }
            for role in roles
        ],
        "vhosts": [{"name": vhost}],
        "permissions": [
            {
                "user": role.user,
                "vhost": vhost,
                "configure": role.configure,
                "write": role.write,
                "read": role.read,
            }
            for role in roles
        ],
    }
