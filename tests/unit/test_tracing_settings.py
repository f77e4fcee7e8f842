"""Whether traces are on, where they go, and what an export failure tells: the OTEL_* variables
and the exporter's one-line reports."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from common.settings import Env, SettingsError
from common.tracing.provider import LastLine, ReportingExporter
from common.tracing.settings import TraceSettings


def settings(**env: str) -> TraceSettings | None:
    return TraceSettings.from_env(Env(env), "service_b")


def test_traces_are_off_unless_asked_for() -> None:
    assert settings() is None
    assert settings(OTEL_SERVICE_NAME="x") is None
    assert (
        settings(OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318") is None
    )
    assert settings(OTEL_SDK_DISABLED="TRUE", OTEL_TRACES_EXPORTER="otlp") is None


def test_the_endpoint_gets_the_traces_path_unless_it_is_the_traces_one() -> None:
    assert settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318/") == TraceSettings(
        "service_b", "http://c:4318/v1/traces"
    )
    assert settings(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="https://t/traces",
        OTEL_SERVICE_NAME="billing",
    ) == TraceSettings("billing", "https://t/traces")
    assert settings(OTEL_TRACES_EXPORTER="otlp") == TraceSettings(
        "service_b", "http://localhost:4318/v1/traces"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:port"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://c/v1/traces"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SDK_DISABLED", "yes please"),
    ],
)
def test_what_cannot_be_used_is_a_settings_error_naming_it(name: str, value: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", name: value}
    with pytest.raises(SettingsError, match=f"^{name}="):
        settings(**env)


class Failing(SpanExporter):
    def __init__(self) -> None:
        self.result = SpanExportResult.FAILURE

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        logging.getLogger("opentelemetry.exporter").error("Failed to export span batch: refused")
        return self.result


def test_an_outage_of_the_collector_is_one_line_and_its_end_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sdk_log = LastLine()
    logging.getLogger("opentelemetry").addHandler(sdk_log)
    try:
        inner = Failing()
        exporter = ReportingExporter(inner, "http://c:4318/v1/traces", sdk_log)
        with caplog.at_level(logging.INFO, logger="common.tracing"):
            for _ in range(50):
                exporter.export([])
            inner.result = SpanExportResult.SUCCESS
            exporter.export([])
            exporter.export([])
    finally:
        logging.getLogger("opentelemetry").removeHandler(sdk_log)
    lines = [
        (r.levelname, r.getMessage(), getattr(r, "error", None))
        for r in caplog.records
        if r.name == "common.tracing"
    ]
    assert lines == [
        (
            "WARNING",
            "traces cannot be exported: spans are dropped until the collector answers "
            "(check OTEL_EXPORTER_OTLP_ENDPOINT)",
            "Failed to export span batch: refused",
        ),
        ("INFO", "traces are exported again", None),
    ]


def test_with_traces_off_no_part_of_opentelemetry_is_imported() -> None:
    """The consumer's and first's entry points ask for their tracing with no OTEL_* set."""
    code = (
        "import sys\n"
        "from common import tracing\n"
        "from common.settings import BrokerSettings, Env\n"
        "env = Env({})\n"
        "traced = tracing.for_consumer(env, BrokerSettings.from_env(env), 'service_a', 'b')\n"
        "assert traced.observers == () and tracing.for_flood(env, 'service_a') is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
