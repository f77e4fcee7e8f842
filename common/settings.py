"""Configuration from environment variables, validated once at start.

A bad value raises `SettingsError` with one line naming the variable, the value and what is
allowed; `common.main.run` turns it into that line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import pika

from common.tls import ca_file_problem

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/%2F"
URL_SEPARATOR = ","  # between the nodes of a cluster in AMQP_URL; a URL itself has no bare comma
ALLOWED_URL = "a URL like amqp://user:password@host:5672/%2F (or amqps://)"
QUEUE_TYPES = ("quorum", "classic")
ORDERINGS = ("unordered", "keyed")
DECLARING = ("all", "own")  # which queues a process declares (common.topology.Queues)
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """An environment variable holds a value the program cannot use."""

    def __init__(self, name: str, value: str, allowed: str) -> None:
        super().__init__(f"{name}={value!r} is not valid: {allowed}")


def redact_url(url: str) -> str:
    """The URL with its password replaced by '***', fit for logs and error messages.

    Works on malformed URLs too (no `//`, say), where a URL parser would find no password and
    give the text back whole: everything between the user name and the last '@' goes.
    """
    head, at, host = url.rpartition("@")
    if not at:
        return url
    scheme_end = head.find("//")
    credentials_start = scheme_end + 2 if scheme_end >= 0 else 0
    user, colon, _password = head[credentials_start:].partition(":")
    if not colon:
        return url
    return f"{head[:credentials_start]}{user}:***@{host}"


class Env:
    """Typed, validated reads of environment variables."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def text(self, name: str, default: str, *, max_length: int = 255, secret: bool = False) -> str:
        """The text in `name`; a `secret` one is never shown, not even in the error."""
        value = self._raw(name)
        if value is None:
            return default
        if len(value) > max_length or not value.isprintable():
            shown = "***" if secret else value
            raise SettingsError(name, shown, f"printable text of at most {max_length} characters")
        return value

    def queue_name(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if len(value.encode()) > 255:
            raise SettingsError(name, value, "a queue name of at most 255 bytes (UTF-8)")
        if value.startswith("amq."):
            raise SettingsError(name, value, "queue names starting with 'amq.' are reserved")
        return value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self._raw(name)
        if value is None:
            return default
        number = int(value) if re.fullmatch(r"[+-]?[0-9]{1,19}", value) else None
        if number is None or not minimum <= number <= maximum:
            raise SettingsError(name, value, f"a whole number from {minimum} to {maximum}")
        return number

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is None or not minimum <= number <= maximum:  # also rejects nan
            raise SettingsError(name, value, f"a number from {minimum:g} to {maximum:g}")
        return number

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._raw(name)
        if value is None:
            return default
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise SettingsError(name, value, f"one of {', '.join(choices)}")

    def amqp_url(self, name: str, default: str) -> str:
        value = self._raw(name)
        return default if value is None else _checked_amqp_url(name, value)

    def amqp_urls(self, name: str, default: str, password: str | None = None) -> tuple[str, ...]:
        """One broker URL, or several separated by commas: the nodes of one cluster; with
        `password`, each URL's user logs in with it (whatever the URL says)."""
        value = self._raw(name)
        if value is None:
            return (default,)
        urls = tuple(url.strip() for url in value.split(URL_SEPARATOR))
        if not all(urls):
            shown = URL_SEPARATOR.join(redact_url(url) for url in urls)
            raise SettingsError(name, shown, f"{ALLOWED_URL}, or several separated by commas")
        if password is not None:
            urls = tuple(with_password(url, password) for url in urls)
        return tuple(_checked_amqp_url(name, url) for url in urls)

    def secret(self, name: str) -> str | None:
        """What the file named by `name` holds (a secret mounted for this process alone, so
        that it is in no environment listing); None when `name` is unset."""
        path = self._raw(name)
        if path is None:
            return None
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise SettingsError(name, path, f"a file this process can read ({reason})") from None
        if not value or not value.isprintable():
            raise SettingsError(name, path, "a file holding the secret on one line")
        return value

    def ca_file(self, name: str) -> str:
        """The path in `name` of the CAs a TLS client trusts (a PEM file); "" when unset: the
        system's CAs."""
        path = self.text(name, "", max_length=4096)
        problem = path and ca_file_problem(path)
        if problem:
            raise SettingsError(name, path, f"a PEM file of CA certificates ({problem})")
        return path


def with_password(url: str, password: str) -> str:
    """`url` with its user's password set to `password` (URL-quoted), for any scheme (AMQP,
    Redis); a URL with no user is left as it is."""
    parts = urlsplit(url)
    if not parts.username:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:{quote(password, safe='')}@{host}").geturl()


def _checked_amqp_url(name: str, value: str) -> str:
    """`value` if it is a broker URL pika can use, else SettingsError (never showing a password)."""
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("amqp", "amqps") and bool(parts.hostname)
        valid = valid and (parts.port is None or parts.port > 0)
    except ValueError:  # say, a port that is not a number: too broken to show
        raise SettingsError(name, "<unparseable>", ALLOWED_URL) from None
    if not valid:
        raise SettingsError(name, redact_url(value), ALLOWED_URL)
    if parts.username is not None and parts.password is None:
        raise SettingsError(name, value, f"{ALLOWED_URL}: a user needs its password")
    try:
        pika.URLParameters(value)  # the query string: ?heartbeat=, ?channel_max= ...
    except Exception as error:
        raise SettingsError(name, redact_url(value), f"{ALLOWED_URL}: {error}") from None
    return value


@dataclass(frozen=True)
class LogSettings:
    level: str
    format: str

    @classmethod
    def from_env(cls, env: Env) -> LogSettings:
        return cls(
            level=env.choice("LOG_LEVEL", "INFO", LOG_LEVELS),
            format=env.choice("LOG_FORMAT", "json", LOG_FORMATS),
        )


@dataclass(frozen=True)
class BrokerSettings:
    """How to reach the broker and how queues are shaped; shared by every process."""

    amqp_urls: tuple[str, ...]  # one node, or the nodes of a cluster
    heartbeat: int
    connect_timeout: float
    queue_type: str
    delivery_limit: int
    dead_letter_queue: str
    max_body_bytes: int
    ordering: str = "unordered"  # or "keyed": each stage's input is `partitions` queues
    partitions: int = 6
    declare_queues: str = "all"  # or "own": only the queues read, the others only checked
    ca_file: str = ""  # the CAs that vouch for an amqps:// broker; "": the system's

    @classmethod
    def from_env(cls, env: Env) -> BrokerSettings:
        amqp_urls = env.amqp_urls("AMQP_URL", DEFAULT_AMQP_URL, env.secret("AMQP_PASSWORD_FILE"))
        ca_file = env.ca_file("AMQP_CA_FILE")
        if ca_file and any(urlsplit(url).scheme != "amqps" for url in amqp_urls):
            raise SettingsError(
                "AMQP_CA_FILE",
                ca_file,
                "set only with amqps:// URLs in AMQP_URL (amqp:// is clear text)",
            )
        return cls(
            amqp_urls=amqp_urls,
            heartbeat=env.integer("HEARTBEAT", 60, minimum=1, maximum=3600),
            connect_timeout=env.number("CONNECT_TIMEOUT", 60.0, minimum=0.0, maximum=86400.0),
            queue_type=env.choice("QUEUE_TYPE", "quorum", QUEUE_TYPES),
            # RabbitMQ 4.0's own default. Every return counts (a crash's, a node's loss, a drain
            # cut short): a three-node rolling restart costs a message at most 3, a poison
            # message 20 quick tries.
            delivery_limit=env.integer("DELIVERY_LIMIT", 20, minimum=1, maximum=1000),
            dead_letter_queue=env.queue_name("DEAD_LETTER_QUEUE", "dead_letter"),
            max_body_bytes=env.integer("MAX_BODY_BYTES", 4096, minimum=64, maximum=1 << 20),
            ordering=env.choice("ORDERING", "unordered", ORDERINGS),
            # 6 divides evenly over 1, 2, 3 or 6 replicas of a stage; 64 keeps the declarations
            # (two stages' worth per process) and the broker's Raft groups within reason.
            partitions=env.integer("PARTITIONS", 6, minimum=1, maximum=64),
            declare_queues=env.choice("DECLARE_QUEUES", "all", DECLARING),
            ca_file=ca_file,
        )

    @property
    def display_url(self) -> str:
        """The broker's URL (or the cluster's URLs), fit for logs."""
        return URL_SEPARATOR.join(redact_url(url) for url in self.amqp_urls)
