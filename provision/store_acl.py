"""Who may do what in `last`'s store: a Redis ACL user per client, with only the commands it
uses on its own keys, and the default user off.

- `last` writes records through one Lua script (`last.redis_store.INSERT`: SET, ZSCORE, ZADD,
  TIME inside it; Redis checks a script's calls against the caller's ACL too), marks lines
  written (ZREM) and asks the server's version (INFO, which shows every section): those
  commands, on keys under its prefix, and no other. No FLUSHALL, no DEL, no CONFIG, no key
  outside the prefix; but SET is SET: an ACL cannot limit its arguments, so `last` could
  overwrite a record under its prefix, or give it an expiry.
- `monitor` (the report) reads: MGET and ZCARD under the prefix (`%R~`: read access to those
  keys only), SCAN (which Redis does not filter by key pattern: it lists every key's name),
  nothing that writes.
- `health` (the store's healthcheck) may PING, nothing else; it needs no password (it can
  learn nothing and change nothing), so that no secret is written for it.

Each user logs in with its role's own password (the same secret as its broker login: one per
process). Redis keeps a password as its SHA-256 in the ACL file (`#<hex>`), so the file gives
no one a password to log in with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from common.settings import SettingsError
from last.store_settings import glob_escape

HEALTH_USER = "health"
WRITER = ("info", "ping", "eval", "evalsha", "script|load", "set", "zscore", "zadd", "time", "zrem")
READER = ("ping", "scan", "mget", "zcard")


def acl_user(name: str, password: str | None, commands: tuple[str, ...], keys: str) -> str:
    """One line of an ACL file: `name`, on, its password's hash (or none needed), no command
    but `commands`, no key but those matching `keys`."""
    secret = f"#{hashlib.sha256(password.encode()).hexdigest()}" if password else "nopass"
    allowed = " ".join(f"+{command}" for command in commands)
    return " ".join(part for part in ("user", name, "on", secret, keys, "-@all", allowed) if part)


def store_acl(prefix: str, passwords: Mapping[str, str], users: Mapping[str, str]) -> list[str]:
    """The ACL file's lines for a store whose keys start with `prefix`; `users` names the
    Redis user of each role (`last`, `monitor`), `passwords` their passwords, by role."""
    if not prefix or any(char.isspace() for char in prefix):
        raise SettingsError("STORE_KEY_PREFIX", prefix, "a prefix with no spaces (an ACL rule)")
    keys = glob_escape(prefix) + "*"
    return [
        "user default off",
        acl_user(users["last"], passwords["last"], WRITER, f"~{keys}"),
        acl_user(users["monitor"], passwords["monitor"], READER, f"%R~{keys}"),  # read only
        acl_user(HEALTH_USER, None, ("ping",), ""),
    ]
