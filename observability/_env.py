"""How the standard ``OTEL_*`` environment variables are read, in one place.

The SDK reads most of them itself (service name, resource attributes, sampler, batch
sizes, the OTLP exporter's endpoint, headers and timeout). What is decided here is only
*which* exporters to install, which the SDK leaves to the caller (or to the
``opentelemetry-instrument`` launcher, which greenroom does not use).
"""

from __future__ import annotations

import os

#: Per-signal OTLP endpoint variables, besides the shared ``OTEL_EXPORTER_OTLP_ENDPOINT``.
_SIGNAL_ENDPOINT = {
    "traces": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "metrics": "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
}
_SIGNAL_EXPORTER = {
    "traces": "OTEL_TRACES_EXPORTER",
    "metrics": "OTEL_METRICS_EXPORTER",
}


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true`` turns every signal off (the spec's only true value)."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def otlp_endpoint_configured(signal: str) -> bool:
    """Whether an OTLP endpoint is set for *signal*, shared or signal-specific."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or os.environ.get(_SIGNAL_ENDPOINT[signal], "").strip()
    )


def exporter_names(signal: str) -> list[str]:
    """The exporters to install for *signal*.

    ``OTEL_<SIGNAL>_EXPORTER`` wins when set (``otlp``, ``console``, ``none``; a
    comma-separated list). When it is unset, OTLP is used only if an endpoint is
    configured: unlike the spec's default of ``otlp``, a developer's machine with no
    collector should not retry exports to localhost:4318 forever.
    """
    raw = os.environ.get(_SIGNAL_EXPORTER[signal])
    if raw is None or not raw.strip():
        return ["otlp"] if otlp_endpoint_configured(signal) else []
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    return [] if "none" in names else names
