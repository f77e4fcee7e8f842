"""Where `last` keeps its records: STORE_URL (a Redis URL; empty: in memory; its user's password
from STORE_PASSWORD_FILE when set; rediss:// checked against the CAs of STORE_CA_FILE) and the
key prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from redis.connection import parse_url

from common.settings import Env, SettingsError, redact_url, with_password

DEFAULT_KEY_PREFIX = "rabbithole:completed:"
URL_HELP = "a Redis URL like redis://host:6379/0 or redis://:password@host:6379/0 (or rediss://)"


@dataclass(frozen=True)
class StoreSettings:
    url: str  # empty: in memory, for this process only
    key_prefix: str
    ca_file: str = ""  # the CAs that vouch for a rediss:// store; "": the system's

    @classmethod
    def from_env(cls, env: Env) -> StoreSettings:
        url = env.text("STORE_URL", "", max_length=4096)
        password = env.secret("STORE_PASSWORD_FILE")
        if url and password is not None:
            url = with_password(url, password)
        prefix = env.text("STORE_KEY_PREFIX", DEFAULT_KEY_PREFIX)
        return cls.checked("STORE_URL", url, prefix, env.ca_file("STORE_CA_FILE"))

    @classmethod
    def checked(cls, name: str, url: str, key_prefix: str, ca_file: str) -> StoreSettings:
        """The settings for `url` ("": in memory), named `name` in an error: a Redis URL, with
        STORE_CA_FILE only for rediss://."""
        if ca_file and not url.startswith("rediss://"):
            raise SettingsError(
                "STORE_CA_FILE",
                ca_file,
                f"set only with a rediss:// {name} (redis:// is clear text)",
            )
        return cls(check_store_url(name, url) if url else "", key_prefix, ca_file)

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def client(self, **options: Any) -> redis.Redis:
        """A client of the store (`options` go to redis-py); over rediss:// it checks the
        store's certificate against `ca_file` and its name against the URL's host."""
        if self.ca_file:
            options["ssl_ca_certs"] = self.ca_file
        return redis.Redis.from_url(self.url, **options)


def check_store_url(name: str, url: str) -> str:
    """`url` if it is a Redis URL; SettingsError naming `name` if not. Its query string may not
    set TLS options: redis-py would let them win over STORE_CA_FILE, and `ssl_cert_reqs=none`
    would turn the check of the store's certificate off."""
    try:
        parts = parse_url(url)
    except ValueError:
        raise SettingsError(name, redact_url(url), URL_HELP) from None
    if "host" not in parts and "path" not in parts:
        raise SettingsError(name, redact_url(url), f"{URL_HELP}: it names no host")
    if any(key.startswith("ssl") for key in parse_qs(urlsplit(url).query)):
        allowed = f"{URL_HELP}, with no ssl_* options (the CA goes in STORE_CA_FILE)"
        raise SettingsError(name, redact_url(url), allowed)
    return url


def glob_escape(text: str) -> str:
    """`text` matched literally in a Redis glob pattern (SCAN MATCH, an ACL key pattern)."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)
