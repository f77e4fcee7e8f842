"""Settings from the environment: defaults, every validator, and the one-line error at start."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from common.consumer import ConsumerSettings
from common.settings import (
    DEFAULT_AMQP_URL,
    BrokerSettings,
    Env,
    LogSettings,
    SettingsError,
    redact_url,
)
from common.topology import following_queue
from first.flood import FloodSettings
from harness.processes import ROOT
from last.store_settings import StoreSettings
from provision.certificates import Authority
from service.work import WorkSettings

PASSWORD = "s3cret-Pa55"


def error_of(call) -> str:
    with pytest.raises(SettingsError) as caught:
        call()
    return str(caught.value)


def assert_names(message: str, name: str, value: str, allowed: str) -> None:
    """The message names the variable, shows the value and says what is allowed."""
    assert message.startswith(f"{name}={value!r} "), message
    assert allowed in message, message
    assert "\n" not in message


# -- Env: reading ----------------------------------------------------------------------------


def test_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RHMQ_TEST_VALUE", "42")
    assert Env().integer("RHMQ_TEST_VALUE", 0, minimum=0, maximum=100) == 42


@pytest.mark.parametrize("blank", ["", " ", "\t\n "])
def test_unset_or_blank_means_default(blank: str) -> None:
    env = Env({"X": blank})
    assert env.integer("X", 7, minimum=1, maximum=10) == 7
    assert env.integer("MISSING", 7, minimum=1, maximum=10) == 7
    assert env.number("X", 1.5, minimum=0, maximum=10) == 1.5
    assert env.choice("X", "quorum", ("quorum", "classic")) == "quorum"
    assert env.text("X", "dflt") == "dflt"
    assert env.queue_name("X", "service_a") == "service_a"
    assert env.amqp_url("X", DEFAULT_AMQP_URL) == DEFAULT_AMQP_URL


def test_values_are_stripped() -> None:
    env = Env({"N": "  12 \n", "T": "  name  "})
    assert env.integer("N", 0, minimum=0, maximum=100) == 12
    assert env.text("T", "x") == "name"


# -- integer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("256", 256), ("10", 10), ("+3", 3)])
def test_integer_accepts_whole_numbers_in_range(raw: str, expected: int) -> None:
    assert Env({"WORKERS": raw}).integer("WORKERS", 5, minimum=1, maximum=256) == expected


@pytest.mark.parametrize("raw", ["zero", "0", "257", "-1", "1.5", "1e3", "0x10", "ten", "9" * 40])
def test_integer_rejects_others(raw: str) -> None:
    message = error_of(lambda: Env({"WORKERS": raw}).integer("WORKERS", 5, minimum=1, maximum=256))
    assert_names(message, "WORKERS", raw, "a whole number from 1 to 256")


# -- number ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"), [("0", 0.0), ("0.25", 0.25), ("2", 2.0), ("1e2", 100.0), ("86400", 86400)]
)
def test_number_accepts_numbers_in_range(raw: str, expected: float) -> None:
    env = Env({"CONNECT_TIMEOUT": raw})
    assert env.number("CONNECT_TIMEOUT", 60.0, minimum=0.0, maximum=86400.0) == expected


@pytest.mark.parametrize(
    "raw", ["soon", "-0.5", "86400.5", "nan", "NaN", "inf", "-inf", "1e400", "1,5", "5s"]
)
def test_number_rejects_others(raw: str) -> None:
    message = error_of(
        lambda: Env({"CONNECT_TIMEOUT": raw}).number(
            "CONNECT_TIMEOUT", 60.0, minimum=0.0, maximum=86400.0
        )
    )
    assert_names(message, "CONNECT_TIMEOUT", raw, "a number from 0 to 86400")


# -- choice ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("quorum", "quorum"), ("classic", "classic"), ("CLASSIC", "classic"), ("Quorum", "quorum")],
)
def test_choice_is_case_insensitive_and_canonical(raw: str, expected: str) -> None:
    assert Env({"QUEUE_TYPE": raw}).choice("QUEUE_TYPE", "quorum", ("quorum", "classic")) == (
        expected
    )


@pytest.mark.parametrize("raw", ["stream", "quorum2", "q", "classic,quorum"])
def test_choice_rejects_others(raw: str) -> None:
    message = error_of(
        lambda: Env({"QUEUE_TYPE": raw}).choice("QUEUE_TYPE", "quorum", ("quorum", "classic"))
    )
    assert_names(message, "QUEUE_TYPE", raw, "one of quorum, classic")


# -- text and queue_name ---------------------------------------------------------------------


def test_text_accepts_printable_text_up_to_the_limit() -> None:
    assert Env({"T": "a" * 255}).text("T", "d") == "a" * 255
    assert Env({"T": "héllo wörld"}).text("T", "d") == "héllo wörld"
    assert Env({"T": "abcd"}).text("T", "d", max_length=4) == "abcd"


@pytest.mark.parametrize(
    ("raw", "max_length"), [("a" * 256, 255), ("abcde", 4), ("a\x00b", 255), ("a\x1bb", 255)]
)
def test_text_rejects_long_or_unprintable(raw: str, max_length: int) -> None:
    message = error_of(lambda: Env({"T": raw}).text("T", "d", max_length=max_length))
    assert_names(message, "T", raw, f"printable text of at most {max_length} characters")


@pytest.mark.parametrize("raw", ["service_a", "my.queue", "amq", "x.amq.y", "q" * 255])
def test_queue_name_accepts_ordinary_names(raw: str) -> None:
    assert Env({"RABBITMQ_QUEUE": raw}).queue_name("RABBITMQ_QUEUE", "service_a") == raw


def test_queue_name_rejects_reserved_prefix() -> None:
    message = error_of(
        lambda: Env({"RABBITMQ_QUEUE": "amq.gen-1"}).queue_name("RABBITMQ_QUEUE", "service_a")
    )
    assert_names(message, "RABBITMQ_QUEUE", "amq.gen-1", "starting with 'amq.' are reserved")


@pytest.mark.parametrize("raw", ["q" * 256, "bad\nname", "tab\there"])
def test_queue_name_rejects_long_or_unprintable(raw: str) -> None:
    message = error_of(lambda: Env({"RABBITMQ_QUEUE": raw}).queue_name("RABBITMQ_QUEUE", "x"))
    assert_names(message, "RABBITMQ_QUEUE", raw, "printable text of at most 255 characters")


def test_queue_name_rejects_names_over_255_utf8_bytes() -> None:
    name = "é" * 200
    assert len(name.encode()) > 255
    with pytest.raises(SettingsError):
        Env({"RABBITMQ_QUEUE": name}).queue_name("RABBITMQ_QUEUE", "service_a")


# -- amqp_url and redact_url -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "amqp://guest:guest@localhost:5672/%2F",
        "amqp://localhost",
        "amqps://user:pw@broker.example.com:5671/vhost",
        "AMQP://guest:guest@127.0.0.1/%2F",
        "amqp://[::1]:5672/",
        "amqp://u:p@host/%2F?heartbeat=30",
    ],
)
def test_amqp_url_accepts_amqp_urls(raw: str) -> None:
    assert Env({"AMQP_URL": raw}).amqp_url("AMQP_URL", DEFAULT_AMQP_URL) == raw


ALLOWED_URL = "a URL like amqp://user:password@host:5672/%2F (or amqps://)"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (f"http://guest:{PASSWORD}@localhost/", "http://guest:***@localhost/"),
        (f"amqp://guest:{PASSWORD}@/", "amqp://guest:***@/"),
        (f"amqp://guest:{PASSWORD}@localhost:0/", "amqp://guest:***@localhost:0/"),
        (f"amqp://guest:{PASSWORD}@localhost:port/", "<unparseable>"),
        (f"amqp://guest:{PASSWORD}@localhost:99999/", "<unparseable>"),
        (f"amqp://guest:{PASSWORD}@[::1", "<unparseable>"),
        (f"amqp://guest:{PASSWORD}@[::1]:x/", "<unparseable>"),
        (f"amqp://guest:p@{PASSWORD}@:5672/", "amqp://guest:***@:5672/"),
        ("localhost:5672", "localhost:5672"),
        ("just words", "just words"),
    ],
)
def test_amqp_url_rejects_others_without_showing_the_password(raw: str, shown: str) -> None:
    message = error_of(lambda: Env({"AMQP_URL": raw}).amqp_url("AMQP_URL", DEFAULT_AMQP_URL))
    assert_names(message, "AMQP_URL", shown, ALLOWED_URL)
    assert PASSWORD not in message


@pytest.mark.parametrize(
    "raw",
    [
        f"guest:{PASSWORD}@localhost:5672/%2F",
        f"amqp:/guest:{PASSWORD}@localhost:5672/%2F",
        f"amqp:guest:{PASSWORD}@localhost",
    ],
)
def test_amqp_url_error_never_shows_a_password_even_without_scheme(raw: str) -> None:
    message = error_of(lambda: Env({"AMQP_URL": raw}).amqp_url("AMQP_URL", DEFAULT_AMQP_URL))
    assert PASSWORD not in message


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("amqp://guest:guest@localhost:5672/%2F", "amqp://guest:***@localhost:5672/%2F"),
        ("amqps://u:p%40ss@host/v?heartbeat=5", "amqps://u:***@host/v?heartbeat=5"),
        ("amqp://u:p@ss@host:1/", "amqp://u:***@host:1/"),
        ("amqp://:pw@host/", "amqp://:***@host/"),
        ("amqp://u:@host/", "amqp://u:***@host/"),
        ("amqp://user@host/", "amqp://user@host/"),
        ("amqp://host:5672/%2F", "amqp://host:5672/%2F"),
        ("", ""),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


# -- settings groups -------------------------------------------------------------------------


def test_broker_settings_defaults() -> None:
    settings = BrokerSettings.from_env(Env({}))
    assert settings == BrokerSettings(
        amqp_urls=(DEFAULT_AMQP_URL,),
        heartbeat=60,
        connect_timeout=60.0,
        queue_type="quorum",
        delivery_limit=20,
        dead_letter_queue="dead_letter",
        max_body_bytes=4096,
    )
    assert settings.display_url == "amqp://guest:***@localhost:5672/%2F"


def test_broker_settings_from_env() -> None:
    settings = BrokerSettings.from_env(
        Env(
            {
                "AMQP_URL": f"amqps://me:{PASSWORD}@mq:5671/prod",
                "HEARTBEAT": "30",
                "CONNECT_TIMEOUT": "2.5",
                "QUEUE_TYPE": "Classic",
                "DELIVERY_LIMIT": "3",
                "DEAD_LETTER_QUEUE": "graveyard",
                "MAX_BODY_BYTES": "64",
            }
        )
    )
    assert settings.amqp_urls == (f"amqps://me:{PASSWORD}@mq:5671/prod",)
    assert settings.display_url == "amqps://me:***@mq:5671/prod"
    assert (settings.heartbeat, settings.connect_timeout) == (30, 2.5)
    assert (settings.queue_type, settings.delivery_limit) == ("classic", 3)
    assert (settings.dead_letter_queue, settings.max_body_bytes) == ("graveyard", 64)


def test_several_nodes_in_amqp_url() -> None:
    raw = f"amqp://me:{PASSWORD}@mq-1:5672/%2F, amqp://me:{PASSWORD}@mq-2:5672/%2F"
    settings = BrokerSettings.from_env(Env({"AMQP_URL": raw}))
    assert settings.amqp_urls == (
        f"amqp://me:{PASSWORD}@mq-1:5672/%2F",
        f"amqp://me:{PASSWORD}@mq-2:5672/%2F",
    )
    assert settings.display_url == "amqp://me:***@mq-1:5672/%2F,amqp://me:***@mq-2:5672/%2F"


def test_the_password_comes_from_amqp_password_file_for_every_node(tmp_path: Path) -> None:
    """A secret mounted for this process alone: it is in no environment listing."""
    secret = tmp_path / "password"
    secret.write_text("s3cret/+:@\n")
    raw = "amqp://service_a@mq-1:5671/%2F,amqp://service_a:old@mq-2/%2F"
    env = Env({"AMQP_URL": raw, "AMQP_PASSWORD_FILE": str(secret)})
    assert BrokerSettings.from_env(env).amqp_urls == (
        "amqp://service_a:s3cret%2F%2B%3A%40@mq-1:5671/%2F",
        "amqp://service_a:s3cret%2F%2B%3A%40@mq-2/%2F",
    )


@pytest.mark.parametrize(
    ("content", "allowed"),
    [
        (None, "a file this process can read (No such file or directory)"),
        ("", "a file holding the secret on one line"),
        ("two\nlines", "a file holding the secret on one line"),
    ],
)
def test_an_unreadable_password_file_is_named_in_one_line(
    tmp_path: Path, content: str | None, allowed: str
) -> None:
    secret = tmp_path / "password"
    if content is not None:
        secret.write_text(content)
    env = Env({"AMQP_URL": "amqp://me@mq-1/%2F", "AMQP_PASSWORD_FILE": str(secret)})
    message = error_of(lambda: BrokerSettings.from_env(env))
    assert_names(message, "AMQP_PASSWORD_FILE", str(secret), allowed)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (f"amqp://me:{PASSWORD}@mq-1/%2F,", "amqp://me:***@mq-1/%2F,"),
        (f"amqp://me:{PASSWORD}@mq-1/%2F,,amqp://mq-2", "amqp://me:***@mq-1/%2F,,amqp://mq-2"),
        (f"amqp://me:{PASSWORD}@mq-1/%2F,http://me:{PASSWORD}@mq-2", "http://me:***@mq-2"),
    ],
)
def test_a_bad_node_in_amqp_url_is_named_without_passwords(raw: str, shown: str) -> None:
    message = error_of(lambda: BrokerSettings.from_env(Env({"AMQP_URL": raw})))
    assert_names(message, "AMQP_URL", shown, "a URL like amqp://user:password@host:5672/%2F")
    assert PASSWORD not in message


@pytest.mark.parametrize(
    ("name", "raw", "allowed"),
    [
        ("HEARTBEAT", "0", "a whole number from 1 to 3600"),
        ("CONNECT_TIMEOUT", "-1", "a number from 0 to 86400"),
        ("QUEUE_TYPE", "stream", "one of quorum, classic"),
        ("DELIVERY_LIMIT", "1001", "a whole number from 1 to 1000"),
        ("DEAD_LETTER_QUEUE", "amq.dead", "reserved"),
        ("MAX_BODY_BYTES", "63", f"a whole number from 64 to {1 << 20}"),
        ("MAX_BODY_BYTES", "lots", f"a whole number from 64 to {1 << 20}"),
    ],
)
def test_broker_settings_reject_bad_values(name: str, raw: str, allowed: str) -> None:
    message = error_of(lambda: BrokerSettings.from_env(Env({name: raw})))
    assert_names(message, name, raw, allowed)


def test_log_settings() -> None:
    assert LogSettings.from_env(Env({})) == LogSettings(level="INFO", format="json")
    assert LogSettings.from_env(Env({"LOG_LEVEL": "debug", "LOG_FORMAT": "TEXT"})) == (
        LogSettings(level="DEBUG", format="text")
    )
    message = error_of(lambda: LogSettings.from_env(Env({"LOG_LEVEL": "verbose"})))
    assert_names(message, "LOG_LEVEL", "verbose", "one of DEBUG, INFO, WARNING, ERROR")
    message = error_of(lambda: LogSettings.from_env(Env({"LOG_FORMAT": "yaml"})))
    assert_names(message, "LOG_FORMAT", "yaml", "one of json, text")


BROKER = BrokerSettings.from_env(Env({}))


def test_consumer_settings_defaults() -> None:
    settings = ConsumerSettings.from_env(
        Env({}), BROKER, default_queue="service_a", default_workers=10
    )
    assert settings == ConsumerSettings(
        queue="service_a",
        workers=10,
        prefetch=100,
        drain_timeout=20.0,
        replica_id=f"{socket.gethostname()}/{os.getpid()}",
    )


@pytest.mark.parametrize("workers", ["1", "7", "256"])
def test_prefetch_defaults_to_100_whatever_the_workers(workers: str) -> None:
    # Commit 2968f83 changed this from 2 x WORKERS: with acks only after the output is
    # confirmed, 2 x WORKERS starved the pipeline.
    settings = ConsumerSettings.from_env(
        Env({"WORKERS": workers}), BROKER, default_queue="q", default_workers=10
    )
    assert (settings.workers, settings.prefetch) == (int(workers), 100)


def test_consumer_settings_from_env() -> None:
    env = Env(
        {
            "RABBITMQ_QUEUE": "service_b",
            "WORKERS": "3",
            "PREFETCH": "1",
            "DRAIN_TIMEOUT": "0.5",
            "REPLICA_ID": "b-2",
        }
    )
    settings = ConsumerSettings.from_env(env, BROKER, default_queue="service_a", default_workers=10)
    assert settings == ConsumerSettings(
        queue="service_b", workers=3, prefetch=1, drain_timeout=0.5, replica_id="b-2"
    )


@pytest.mark.parametrize(
    ("name", "raw", "allowed"),
    [
        ("WORKERS", "zero", "a whole number from 1 to 256"),
        ("WORKERS", "0", "a whole number from 1 to 256"),
        ("WORKERS", "257", "a whole number from 1 to 256"),
        ("PREFETCH", "0", "a whole number from 1 to 65535"),
        ("PREFETCH", "65536", "a whole number from 1 to 65535"),
        ("DRAIN_TIMEOUT", "forever", "a number from 0 to 3600"),
        ("RABBITMQ_QUEUE", "amq.q", "reserved"),
        ("RABBITMQ_QUEUE", "dead_letter", "a queue other than DEAD_LETTER_QUEUE"),
    ],
)
def test_consumer_settings_reject_bad_values(name: str, raw: str, allowed: str) -> None:
    message = error_of(
        lambda: ConsumerSettings.from_env(
            Env({name: raw}), BROKER, default_queue="service_a", default_workers=10
        )
    )
    assert_names(message, name, raw, allowed)


def test_work_settings() -> None:
    settings = WorkSettings.from_env(Env({}), "service_a")
    assert (settings.stage, settings.wait_min, settings.wait_max) == ("service_a", 0.0, 0.0)
    settings = WorkSettings.from_env(Env({"RANDOM_WAIT_MIN": "0.5"}), "s")
    assert (settings.wait_min, settings.wait_max) == (0.5, 0.5)  # max defaults to min
    env = Env({"RANDOM_WAIT_MIN": "0.1", "RANDOM_WAIT_MAX": "0.3"})
    settings = WorkSettings.from_env(env, "s")
    assert (settings.wait_min, settings.wait_max) == (0.1, 0.3)
    env = Env({"RANDOM_WAIT_MIN": "2", "RANDOM_WAIT_MAX": "2"})
    assert WorkSettings.from_env(env, "s").wait_max == 2.0


def test_work_settings_reject_max_below_min() -> None:
    env = Env({"RANDOM_WAIT_MIN": "2", "RANDOM_WAIT_MAX": "1"})
    message = error_of(lambda: WorkSettings.from_env(env, "s"))
    assert message.startswith("RANDOM_WAIT_MAX="), message
    assert "'1" in message  # the value (as parsed: '1.0')
    assert "at least RANDOM_WAIT_MIN (2)" in message


@pytest.mark.parametrize(
    ("name", "raw"),
    [("RANDOM_WAIT_MIN", "-1"), ("RANDOM_WAIT_MAX", "3601"), ("RANDOM_WAIT_MIN", "x")],
)
def test_work_settings_reject_bad_values(name: str, raw: str) -> None:
    message = error_of(lambda: WorkSettings.from_env(Env({name: raw}), "s"))
    assert_names(message, name, raw, "a number from 0 to 3600")


def test_flood_settings() -> None:
    defaults = FloodSettings.from_env(Env({}))
    assert defaults == FloodSettings(
        number_of_messages=100,
        next_queue="service_a",
        publish_rate=0.0,
        progress_interval=5.0,
        run_id=defaults.run_id,
    )
    assert re.fullmatch(r"20[0-9]{6}-[0-9]{6}-[0-9a-f]{4}", defaults.run_id), defaults.run_id
    env = Env(
        {
            "NUMBER_OF_MESSAGES": "0",
            "RABBITMQ_NEXT_QUEUE": "in",
            "PUBLISH_RATE": "250.5",
            "PROGRESS_INTERVAL": "0",
            "RUN_ID": "nightly-7",
        }
    )
    assert FloodSettings.from_env(env) == FloodSettings(
        number_of_messages=0,
        next_queue="in",
        publish_rate=250.5,
        progress_interval=0.0,
        run_id="nightly-7",
    )


@pytest.mark.parametrize(
    ("name", "raw", "allowed"),
    [
        ("NUMBER_OF_MESSAGES", "-1", "a whole number from 0 to 1000000000"),
        ("NUMBER_OF_MESSAGES", "many", "a whole number from 0 to 1000000000"),
        ("PUBLISH_RATE", "fast", "a number from 0 to 1e+06"),
        ("RABBITMQ_NEXT_QUEUE", "amq.next", "reserved"),
    ],
)
def test_flood_settings_reject_bad_values(name: str, raw: str, allowed: str) -> None:
    message = error_of(lambda: FloodSettings.from_env(Env({name: raw})))
    assert_names(message, name, raw, allowed)


# -- the processes: a bad setting is one line on stderr and exit code 2, before any connection


SETTING_NAMES = {
    "AMQP_URL",
    "PROGRESS_INTERVAL",
    "RESULTS_FILE",
    "FAIL_ON_SEQ",
    "HEARTBEAT",
    "CONNECT_TIMEOUT",
    "QUEUE_TYPE",
    "DELIVERY_LIMIT",
    "DEAD_LETTER_QUEUE",
    "MAX_BODY_BYTES",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "WORKERS",
    "PREFETCH",
    "DRAIN_TIMEOUT",
    "RABBITMQ_QUEUE",
    "RABBITMQ_NEXT_QUEUE",
    "RANDOM_WAIT_MIN",
    "RANDOM_WAIT_MAX",
    "EXPECTED_MESSAGES",
    "NUMBER_OF_MESSAGES",
    "PUBLISH_RATE",
}
# Nothing listens on port 1: were settings not validated before connecting, the process would
# fail at once with exit code 1 (CONNECT_TIMEOUT=0) instead of hanging or passing.
NO_BROKER = {"AMQP_URL": "amqp://guest:guest@127.0.0.1:1/%2F", "CONNECT_TIMEOUT": "0"}


def run_module(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
    return subprocess.run(
        [sys.executable, "-m", module],
        check=False,
        cwd=ROOT,
        env={**base, **NO_BROKER, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def assert_one_line_config_error(result: subprocess.CompletedProcess[str], *parts: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert line.startswith("configuration error: "), line
    for part in parts:
        assert part in line, line
    assert "Traceback" not in result.stderr + result.stdout
    return line


def test_service_with_bad_workers_exits_2_with_one_line() -> None:
    result = run_module("service", WORKERS="zero")
    assert_one_line_config_error(result, "WORKERS", "'zero'", "a whole number from 1 to 256")


def test_service_with_bad_amqp_url_exits_2_without_the_password() -> None:
    result = run_module("service", AMQP_URL=f"http://admin:{PASSWORD}@localhost:5672/%2F")
    assert_one_line_config_error(result, "AMQP_URL", "http://admin:***@localhost:5672/%2F")
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize("module", ["service", "first", "last"])
def test_bad_log_format_exits_2_with_one_line(module: str) -> None:
    result = run_module(module, LOG_FORMAT="xml")
    assert_one_line_config_error(result, "LOG_FORMAT", "'xml'", "one of json, text")
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("module", "name", "raw"),
    [
        ("service", "RANDOM_WAIT_MAX", "-5"),
        ("service", "RABBITMQ_NEXT_QUEUE", "amq.x"),
        ("first", "NUMBER_OF_MESSAGES", "lots"),
        ("last", "EXPECTED_MESSAGES", "-1"),
        ("last", "QUEUE_TYPE", "stream"),
    ],
)
def test_every_process_rejects_bad_values_before_connecting(
    module: str, name: str, raw: str
) -> None:
    assert_one_line_config_error(run_module(module, **{name: raw}), name, repr(raw))


def test_service_with_schemeless_amqp_url_does_not_print_the_password() -> None:
    result = run_module("service", AMQP_URL=f"admin:{PASSWORD}@localhost:5672/%2F")
    assert_one_line_config_error(result, "AMQP_URL")
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "parts"),
    [
        ({"RABBITMQ_QUEUE": "service_b", "RABBITMQ_NEXT_QUEUE": "service_b"}, ["service_b"]),
        ({"RABBITMQ_QUEUE": "my_stage"}, ["RABBITMQ_NEXT_QUEUE", "other than RABBITMQ_QUEUE"]),
    ],
)
def test_service_refuses_to_publish_to_its_own_queue(env: dict[str, str], parts: list) -> None:
    assert_one_line_config_error(run_module("service", **env), "RABBITMQ_NEXT_QUEUE", *parts)


def test_service_next_queue_follows_the_pipeline_by_default() -> None:
    assert following_queue("service_a") == "service_b"
    assert following_queue("service_c") == "service_log"
    assert following_queue("service_log") is None
    assert following_queue("elsewhere") is None


def test_last_with_an_unwritable_results_file_exits_2(tmp_path: Path) -> None:
    path = str(tmp_path / "missing-dir" / "results.jsonl")
    result = run_module("last", RESULTS_FILE=path)
    assert_one_line_config_error(result, "RESULTS_FILE", path)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (f"amqp://u:{PASSWORD}@localhost/%2F?heartbeat=abc", "Invalid heartbeat value"),
        (f"amqp://u:{PASSWORD}@localhost/%2F?channel_max=0", "channel_max"),
        (f"amqp://u:{PASSWORD}@localhost/%2F?frame_max=1", "Frame Size"),
        ("amqp://user@localhost/%2F", "a user needs its password"),
    ],
)
def test_amqp_url_query_and_user_are_checked_at_start(raw: str, reason: str) -> None:
    message = error_of(lambda: Env({"AMQP_URL": raw}).amqp_url("AMQP_URL", DEFAULT_AMQP_URL))
    assert "AMQP_URL" in message and reason in message
    assert PASSWORD not in message


def test_the_stores_password_comes_from_store_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-the-volume\n")
    env = Env({"STORE_URL": "redis://last@store:6379/0", "STORE_PASSWORD_FILE": str(secret)})
    settings = StoreSettings.from_env(env)
    assert settings.url == "redis://last:from-the-volume@store:6379/0"
    assert settings.display_url == "redis://last:***@store:6379/0"


def test_the_cas_come_from_amqp_ca_file_and_store_ca_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Authority.new().certificate_pem())
    broker = BrokerSettings.from_env(
        Env({"AMQP_URL": "amqps://me:pw@mq-1:5671/%2F", "AMQP_CA_FILE": str(ca)})
    )
    assert broker.ca_file == str(ca)
    store = StoreSettings.from_env(
        Env({"STORE_URL": "rediss://last:pw@store:6379/0", "STORE_CA_FILE": str(ca)})
    )
    assert store.ca_file == str(ca)
    assert BrokerSettings.from_env(Env({})).ca_file == ""  # unset: the system's CAs


@pytest.mark.parametrize(
    ("content", "allowed"),
    [
        (None, "a PEM file of CA certificates (no such file)"),
        ("not a certificate", "a PEM file of CA certificates (no PEM certificate in it)"),
    ],
)
def test_a_ca_file_that_cannot_serve_is_named_in_one_line(
    tmp_path: Path, content: str | None, allowed: str
) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    env = Env({"AMQP_URL": "amqps://me:pw@mq-1/%2F", "AMQP_CA_FILE": str(ca)})
    assert_names(error_of(lambda: BrokerSettings.from_env(env)), "AMQP_CA_FILE", str(ca), allowed)


def test_a_ca_file_for_a_plain_url_is_refused_rather_than_ignored(tmp_path: Path) -> None:
    """A CA named for a clear-text connection says the operator meant TLS: say so at start."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Authority.new().certificate_pem())
    urls = "amqps://me:pw@mq-1/%2F,amqp://me:pw@mq-2/%2F"
    plain_node = Env({"AMQP_URL": urls, "AMQP_CA_FILE": str(ca)})
    message = error_of(lambda: BrokerSettings.from_env(plain_node))
    assert_names(message, "AMQP_CA_FILE", str(ca), "only with amqps:// URLs in AMQP_URL")
    plain_store = Env({"STORE_URL": "redis://store:6379/0", "STORE_CA_FILE": str(ca)})
    message = error_of(lambda: StoreSettings.from_env(plain_store))
    assert_names(message, "STORE_CA_FILE", str(ca), "only with a rediss:// STORE_URL")
