"""The HTTP processes' settings, from environment variables like the broker pipeline's.

A bad value stops the process with one line naming the variable (`common.settings.SettingsError`,
exit code 2), as in the broker pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from common.settings import Env, SettingsError

DEFAULT_BIND = "127.0.0.1:8000"


def port_of(bind: str) -> int:
    """The port of a `host:port` address; ValueError if it has none."""
    host, colon, port = bind.rpartition(":")
    if not (host and colon and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(bind)
    return int(port)


def http_timeout(env: Env) -> float:
    """HTTP_TIMEOUT: how long `first` waits for a message to go through the whole chain."""
    return env.number("HTTP_TIMEOUT", 30.0, minimum=0.1, maximum=3600.0)


def next_url(env: Env, what: str) -> str:
    """NEXT_URL, which has no default: where `what` (the next stage) takes messages."""
    value = env.text("NEXT_URL", "", max_length=2048)
    allowed = f"the URL of {what}, like http://localhost:8000/messages"
    try:
        parts = parse_url(value)
    except LocationParseError:
        raise SettingsError("NEXT_URL", value, allowed) from None
    if parts.scheme not in ("http", "https") or not parts.host:
        raise SettingsError("NEXT_URL", value, allowed)
    return value


@dataclass(frozen=True)
class ServerSettings:
    bind: str  # host:port to listen on
    workers: int  # threads, each handling one call at a time
    drain_timeout: float  # seconds to finish the calls in hand after SIGTERM
    timeout: float  # the deadline of a call that carries none, from when it arrives

    @classmethod
    def from_env(cls, env: Env) -> ServerSettings:
        bind = env.text("HTTP_BIND", DEFAULT_BIND)
        try:
            port_of(bind)
        except ValueError:
            raise SettingsError("HTTP_BIND", bind, "host:port, like 0.0.0.0:8000") from None
        return cls(
            bind=bind,
            workers=env.integer("WORKERS", 10, minimum=1, maximum=1000),
            drain_timeout=env.number("DRAIN_TIMEOUT", 20.0, minimum=0.0, maximum=3600.0),
            timeout=http_timeout(env),
        )
