"""`python -m provision DIR`: the secrets of a deployment, made at its first start and kept.

Compose runs it once before anything else (its `provision` service), with one volume per
reader mounted under DIR, so that each process can read its own secret and no other:

    DIR/<role>/password          the role's broker password (first, service_a, ..., admin),
                                 readable by the apps' user alone
    DIR/broker/definitions.json  what the broker imports at boot: users (hashes only), their
                                 rights (`provision.definitions`); only the broker mounts it,
                                 and any user there may read it (the broker's own user differs
                                 from one RabbitMQ image to another)
    DIR/store/users.acl          what `last`'s store (Redis) loads: a user per client with only
                                 its commands on its keys, the default user off
                                 (`provision.store_acl`); only the store mounts it
    DIR/cookie/erlang.cookie     the cluster's Erlang cookie (RABBITMQ_ERLANG_COOKIE in .env, or
                                 64 random hex digits), only where DIR/cookie is mounted
    DIR/ca, DIR/tls/<host>,      the deployment's certificate authority, a certificate for each
    DIR/<role>/ca.pem            server, and the authority's certificate for every client
                                 (`provision.tls_files`)

A password set in RABBITHOLE_<ROLE>_PASSWORD (.env) is used; else the one kept; else a new one
is generated: 32 random bytes, URL-safe. `--rotate ROLE...` (or `--rotate all`: every role's
password, and the authority with every certificate; the cluster's cookie only when named:
`--rotate cookie`) forgets the kept ones, so that new ones are generated (or .env's taken); the
authority alone is `--rotate tls`. The new files are read by whatever starts next:
re-create everything at once (`up -d --force-recreate`), or a container that restarts before
the broker has the new hashes is refused. The definitions are written again
every time, and the broker imports them at every boot: a restart applies new passwords.
`--show ROLE` prints one password, for the operator (admin) and the host's tools (monitor);
`--show ca` the authority's certificate, for a client on the host. Neither writes anything.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

from common.settings import Env, SettingsError
from last.store_settings import DEFAULT_KEY_PREFIX
from provision.definitions import definitions
from provision.roles import pipeline_roles
from provision.secret_files import keep_or_make, write_secret
from provision.store_acl import store_acl
from provision.tls_files import TLS, provision_tls

APP_UID = 10001  # the image's `app` user (Dockerfile), which every pipeline process runs as
PASSWORD_BYTES = 32  # 256 bits: no one guesses it, and it stays URL-safe as token_urlsafe
# The cluster's Erlang cookie, the nodes' shared secret (whoever has it runs any command on a
# node): made only where its volume is mounted under DIR (docker-compose.cluster.yml).
COOKIE = "cookie"
VHOST = "/"  # the apps' (AMQP_URL's /%2F)
CA = "ca"  # `--show ca`: the authority's certificate (public), for a client on the host


def provision(directory: Path, rotate: set[str], env: Env) -> list[str]:
    """Keep or make every role's password (and the cluster's Erlang cookie, where its volume is
    mounted) and the TLS files, and write the broker's definitions; the roles (and `cookie`,
    `tls`, `tls:<host>`) made anew."""
    roles = pipeline_roles()
    passwords, made = {}, []
    for role in roles:
        path = directory / role.role / "password"
        new = keep_or_make(
            path,
            env.text(f"RABBITHOLE_{role.role.upper()}_PASSWORD", "", secret=True),
            "all" in rotate or role.role in rotate,
            secrets.token_urlsafe(PASSWORD_BYTES),
            APP_UID,
        )
        passwords[role.role] = new or path.read_text(encoding="utf-8").strip()
        made += [role.role] if new else []
    document = definitions(roles, passwords, VHOST)
    write_secret(directory / "broker" / "definitions.json", json.dumps(document))
    prefix = env.text("STORE_KEY_PREFIX", DEFAULT_KEY_PREFIX)
    users = {role.role: role.user for role in roles}
    acl = store_acl(prefix, passwords, users)
    write_secret(directory / "store" / "users.acl", "\n".join(acl) + "\n")
    if (directory / COOKIE).is_dir():
        cookie = env.text("RABBITMQ_ERLANG_COOKIE", "", secret=True)
        rotating = COOKIE in rotate  # only when named: every node must restart with it at once
        if keep_or_make(
            directory / COOKIE / "erlang.cookie", cookie, rotating, secrets.token_hex(32), 0
        ):
            made.append(COOKIE)
    rotating = "all" in rotate or TLS in rotate
    made += provision_tls(directory, (role.role for role in roles), rotating)
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
    rotatable, showable = known | {"all", COOKIE, TLS}, known | {CA}
    for asked, allowed in [*((r, rotatable) for r in args.rotate), (args.show, showable)]:
        if asked and asked not in allowed:
            return say(f"provision: no {asked!r} to name: one of {', '.join(sorted(allowed))}", 2)
    if args.show:
        if args.show == CA:
            path = args.directory / CA / "ca.pem"
        else:
            path = args.directory / args.show / "password"
        if not path.exists():
            return say(f"provision: no {args.show} secret yet: start the deployment", 1)
        return say(path.read_text(encoding="utf-8").strip(), 0)
    try:
        made = provision(args.directory, set(args.rotate), Env())
    except SettingsError as error:
        return say(f"configuration error: {error}", 2)
    line = f"provision: made anew: {', '.join(made) or 'nothing'}; definitions written"
    servers = [name.partition(":")[2] for name in made if name.startswith(f"{TLS}:")]
    if servers:
        line += f"; {', '.join(servers)} serve the new certificates once (re)started"
    return say(line, 0)


if __name__ == "__main__":
    sys.exit(main())
