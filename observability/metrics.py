"""Process-local counters: plain ints in a dict, cheap enough for hot paths.

``counter("envelopes_malformed_total", "...").add()`` costs a dict update, with no
OpenTelemetry on the path. ``snapshot()`` reads them all, for tests, health endpoints and
the load generator. When an OTLP endpoint is configured, ``configure_metrics`` (called by
``configure_tracing``) mirrors every counter to OpenTelemetry as an *observable* counter:
the SDK reads the ints when it exports, so the hot path still pays nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import _env

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource

__all__ = ["Counter", "configure_metrics", "counter", "snapshot"]

_log = logging.getLogger(__name__)

LabelKey = tuple[tuple[str, Any], ...]


class Counter:
    """A monotonic count, optionally split by labels (``add(reason="bad_type")``).

    ``add`` is one dict update keyed by the labels as given; label order is normalised
    only when counts are read. Keep label cardinality small (a reason, a message type),
    never an id. ``add`` takes no lock, by design: greenroom's hot paths run on one event
    loop thread, and a lock would cost several times the update itself. Increments racing
    from several threads on one counter may, rarely, lose a count.
    """

    __slots__ = ("name", "description", "_values")

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self._values: dict[LabelKey, int] = {}

    def add(self, n: int = 1, **labels: Any) -> None:
        """Add *n* (>= 0) to the count for *labels*."""
        if n < 0:
            raise ValueError(f"counter {self.name} cannot decrease (add({n}))")
        key = tuple(labels.items()) if labels else ()
        values = self._values
        values[key] = values.get(key, 0) + n

    def _merged(self) -> dict[LabelKey, int]:
        merged: dict[LabelKey, int] = {}
        for key, count in list(self._values.items()):
            norm = tuple(sorted(key)) if len(key) > 1 else key
            merged[norm] = merged.get(norm, 0) + count
        return merged

    def value(self, **labels: Any) -> int:
        """The count for exactly these *labels* (``value()``: the unlabelled one)."""
        return self._merged().get(tuple(sorted(labels.items())), 0)

    def total(self) -> int:
        """The sum over every label set."""
        return sum(list(self._values.values()))

    def items(self) -> list[tuple[dict[str, Any], int]]:
        """``(labels, count)`` pairs, one per label set seen."""
        return [(dict(key), count) for key, count in self._merged().items()]

    def __repr__(self) -> str:
        return f"Counter({self.name!r}, total={self.total()})"


class _Registry:
    lock = threading.Lock()
    counters: dict[str, Counter] = {}
    meter_provider: MeterProvider | None = None
    meter: Any = None


def counter(name: str, description: str = "") -> Counter:
    """The counter called *name*, created on first use (same name, same object).

    Modules can call this at import time; the first description given is kept.
    """
    existing = _Registry.counters.get(name)
    if existing is not None:
        return existing
    with _Registry.lock:
        existing = _Registry.counters.get(name)
        if existing is not None:
            return existing
        created = Counter(name, description)
        _Registry.counters[name] = created
        if _Registry.meter is not None:
            _mirror(_Registry.meter, created)
        return created


def _label_text(key: LabelKey) -> str:
    return ",".join(f'{k}="{v}"' for k, v in key)


def snapshot() -> dict[str, int]:
    """Every count, keyed Prometheus-style: ``name`` or ``name{label="value",...}``.

    Flat string keys and int values, so the result is JSON as is.
    """
    out: dict[str, int] = {}
    with _Registry.lock:
        counters = list(_Registry.counters.values())
    for c in counters:
        for key, count in c._merged().items():
            out[f"{c.name}{{{_label_text(key)}}}" if key else c.name] = count
    return out


def _mirror(meter: Any, c: Counter) -> None:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        return [Observation(count, labels or None) for labels, count in c.items()]

    meter.create_observable_counter(c.name, callbacks=[observe], description=c.description)


def configure_metrics(
    resource: Resource | None = None, *, reader: MetricReader | None = None
) -> MeterProvider | None:
    """Mirror the counters to OpenTelemetry metrics when an OTLP endpoint is set.

    Reads the same variables as tracing (``OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT``,
    ``OTEL_METRICS_EXPORTER``, ``OTEL_SDK_DISABLED``; the OTLP exporter reads the rest).
    An explicit *reader* (tests pass an ``InMemoryMetricReader``) is added as well. The
    ``MeterProvider`` is private to greenroom rather than OpenTelemetry's global, which
    can be set only once per process. Calling again replaces (and shuts down) the
    previous one. Returns the provider, or ``None`` when nothing is mirrored.
    """
    readers: list[MetricReader] = []
    if not _env.sdk_disabled():
        if "otlp" in _env.exporter_names("metrics"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        if reader is not None:
            readers.append(reader)
    provider: MeterProvider | None = None
    if readers:
        from opentelemetry.sdk.metrics import MeterProvider

        kwargs: dict[str, Any] = {"metric_readers": readers}
        if resource is not None:
            kwargs["resource"] = resource
        provider = MeterProvider(**kwargs)

    with _Registry.lock:
        old = _Registry.meter_provider
        _Registry.meter_provider = provider
        _Registry.meter = provider.get_meter("greenroom") if provider is not None else None
        if _Registry.meter is not None:
            for c in _Registry.counters.values():
                _mirror(_Registry.meter, c)
    if old is not None:
        try:
            old.shutdown()
        except Exception:  # a failing final export must not stop reconfiguration
            _log.warning("previous MeterProvider failed to shut down", exc_info=True)
    return provider
