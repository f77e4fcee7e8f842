"""Where `last` keeps its records: STORE_URL (a Redis URL; empty: in memory; its user's password
from STORE_PASSWORD_FILE when set) and the key prefix."""

from __future__ import annotations

from dataclasses import dataclass

from redis.connection import parse_url

from common.settings import Env, SettingsError, redact_url, with_password

DEFAULT_KEY_PREFIX = "rabbithole:completed:"
URL_HELP = "a Redis URL like redis://host:6379/0 or redis://:password@host:6379/0 (or rediss://)"


@dataclass(frozen=True)
class StoreSettings:
    url: str  # empty: in memory, for this process only
    key_prefix: str

    @classmethod
    def from_env(cls, env: Env) -> StoreSettings:
        url = env.text("STORE_URL", "", max_length=4096)
        password = env.secret("STORE_PASSWORD_FILE")
        if url and password is not None:
            url = with_password(url, password)
        return cls(
            url=check_store_url("STORE_URL", url) if url else "",
            key_prefix=env.text("STORE_KEY_PREFIX", DEFAULT_KEY_PREFIX),
        )

    @property
    def display_url(self) -> str:
        return redact_url(self.url)


def check_store_url(name: str, url: str) -> str:
    """`url` if it is a Redis URL; SettingsError naming `name` if not."""
    try:
        parts = parse_url(url)
    except ValueError:
        raise SettingsError(name, redact_url(url), URL_HELP) from None
    if "host" not in parts and "path" not in parts:
        raise SettingsError(name, redact_url(url), f"{URL_HELP}: it names no host")
    return url


def glob_escape(text: str) -> str:
    """`text` matched literally in a Redis glob pattern (SCAN MATCH, an ACL key pattern)."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)
