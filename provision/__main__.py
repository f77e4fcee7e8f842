"""`python -m provision DIR`: the secrets of a deployment, made at its first start and kept.

Compose runs it once before anything else (its `provision` service), with one volume per
reader mounted under DIR, so that each process can read its own secret and no other:

    DIR/<role>/password          the role's broker password (first, service_a, ..., admin),
                                 readable by the apps' user alone
    DIR/broker/definitions.json  what the broker imports at boot: users (hashes only), rights,
                                 queues (`provision.definitions`); only the broker mounts it,
                                 and any user there may read it (the broker's own user differs
                                 from one RabbitMQ image to another)

A password set in RABBITHOLE_<ROLE>_PASSWORD (.env) is used; else the one kept; else a new one
is generated: 32 random bytes, URL-safe. `--rotate ROLE...` (or `--rotate all`) forgets the
kept ones, so that new ones are generated (or .env's taken). The definitions are written again
every time, and the broker imports them at every boot: a restart applies new passwords.
`--show ROLE` prints one password, for the operator (admin) and the host's tools (monitor),
and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from common.settings import BrokerSettings, Env, SettingsError
from provision.definitions import definitions
from provision.roles import pipeline_roles

APP_UID = 10001  # the image's `app` user (Dockerfile), which every pipeline process runs as
PASSWORD_BYTES = 32  # 256 bits: no one guesses it, and it stays URL-safe as token_urlsafe


def write_secret(path: Path, text: str, *, owner: int | None = None) -> None:
    """Write `text` to `path` (whole, or not at all), readable by `owner` alone (when run as
    root, as in compose), or by anyone in the container that mounts it (no owner)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".new")
    temporary.write_text(text, encoding="utf-8")
    temporary.chmod(0o444 if owner is None else 0o400)
    if owner is not None and os.geteuid() == 0:
        os.chown(temporary, owner, owner)
    temporary.replace(path)


def provision(directory: Path, rotate: set[str], env: Env) -> list[str]:
    """Keep or make every role's password and write the broker's definitions; the roles whose
    password is new."""
    broker = BrokerSettings.from_env(env)
    roles = pipeline_roles()
    passwords, made = {}, []
    for role in roles:
        path = directory / role.role / "password"
        kept = path.read_text(encoding="utf-8").strip() if path.exists() else ""
        if "all" in rotate or role.role in rotate:
            kept = ""
        given = env.text(f"RABBITHOLE_{role.role.upper()}_PASSWORD", "")
        passwords[role.role] = given or kept or secrets.token_urlsafe(PASSWORD_BYTES)
        if passwords[role.role] != kept:
            write_secret(path, passwords[role.role] + "\n", owner=APP_UID)
            made.append(role.role)
    document = definitions(roles, passwords, env.text("RABBITMQ_VHOST", "/"), broker)
    write_secret(directory / "broker" / "definitions.json", json.dumps(document))
    return made


def say(line: str, code: int) -> int:
    print(line, file=sys.stderr if code else sys.stdout)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m provision", description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--rotate", nargs="+", default=[], metavar="ROLE")
    parser.add_argument("--show", metavar="ROLE")
    args = parser.parse_args()
    known = {role.role for role in pipeline_roles()}
    for role in [*args.rotate, *([args.show] if args.show else [])]:
        if role not in known | {"all"}:
            return say(f"provision: no role {role!r}: one of {', '.join(sorted(known))}", 2)
    if args.show:
        path = args.directory / args.show / "password"
        if not path.exists():
            return say(f"provision: no password for {args.show} yet: start the deployment", 1)
        return say(path.read_text(encoding="utf-8").strip(), 0)
    try:
        made = provision(args.directory, set(args.rotate), Env())
    except SettingsError as error:
        return say(f"configuration error: {error}", 2)
    return say(
        f"provision: new passwords for {', '.join(made) or 'no role'}; definitions written", 0
    )


if __name__ == "__main__":
    sys.exit(main())
