"""Whether this process exports traces, and where: the standard `OTEL_*` variables.

Traces are off unless asked for: `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, or `OTEL_TRACES_EXPORTER=otlp` (then to the
specification's default, `http://localhost:4318`). `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none` turns them off whatever else is set. Only OTLP over HTTP
(`http/protobuf`) is exported; any other exporter or protocol asked for is a settings error, as is
an endpoint that is not an http(s) URL, so that a typo costs one line at start, not a silent run
without traces or an error per batch. This module imports nothing of OpenTelemetry: with traces
off, no part of the SDK is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from common.settings import Env, SettingsError

# The specification's default for OTLP/HTTP, used when only OTEL_TRACES_EXPORTER=otlp is set.
DEFAULT_ENDPOINT = "http://localhost:4318"
TRACES_PATH = "/v1/traces"
HTTP = "http/protobuf"  # the one OTLP protocol exported (gRPC would need another exporter)
URL_HELP = "an http:// or https:// URL of an OTLP/HTTP receiver, e.g. http://localhost:4318"


@dataclass(frozen=True)
class TraceSettings:
    service_name: str
    endpoint: str  # the full URL spans are posted to (…/v1/traces)

    @classmethod
    def from_env(cls, env: Env, process: str) -> TraceSettings | None:
        """The settings if traces are asked for, None if not; `process` names the service by
        default (first, service_a, …, last)."""
        if env.choice("OTEL_SDK_DISABLED", "false", ("true", "false")) == "true":
            return None
        exporter = env.choice("OTEL_TRACES_EXPORTER", "", ("otlp", "none"))
        base = env.text("OTEL_EXPORTER_OTLP_ENDPOINT", "", max_length=2048)
        traces = env.text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", max_length=2048)
        if exporter == "none" or not (exporter or base or traces):
            return None
        env.choice("OTEL_EXPORTER_OTLP_PROTOCOL", HTTP, (HTTP,))
        env.choice("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", HTTP, (HTTP,))
        if traces:
            endpoint = checked_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces)
        else:  # the base URL gets the signal's path, as the specification says
            name = "OTEL_EXPORTER_OTLP_ENDPOINT"
            endpoint = checked_url(name, base or DEFAULT_ENDPOINT).rstrip("/") + TRACES_PATH
        return cls(env.text("OTEL_SERVICE_NAME", process), endpoint)


def checked_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise SettingsError(name, url, f"{URL_HELP}: its port is not a number") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(name, url, URL_HELP)
    return url
