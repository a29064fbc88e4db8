"""greenroom's metrics: plain ints on the hot path, OpenTelemetry at collection time.

Three kinds, one registry (same name, same object; created on first use, so modules
make theirs at import time):

- ``counter(name).add(n, **labels)``: a monotonic count, one dict update;
- ``gauge(name).add(n)`` / ``.set(v)`` / ``.observe(callback)``: a value that goes up
  and down, kept as an int or read from the owner's callback when collected;
- ``histogram(name).record(value, n=1, **labels)``: fixed buckets, plain ints (one
  ``bisect`` and three adds; ``n`` records a whole fan-out batch at once).

Why not OpenTelemetry's synchronous instruments on the hot paths: one
``Counter.add``/``Histogram.record`` through the SDK measured 13-30 µs here (attributes
hashed, a lock, exemplar sampling), about the whole CPU budget of a delivery; the dict
update costs ~0.3 µs. So the SDK reads the ints when it collects: counters and gauges as
*observable* instruments of a ``MeterProvider``, histograms as ``HistogramDataPoint``s
handed to the same readers (the SDK has no observable histogram).

``configure_metrics`` builds that ``MeterProvider`` with two readers:

- Prometheus (``opentelemetry-exporter-prometheus``, a private ``CollectorRegistry``):
  pull-only, costs nothing until scraped; ``prometheus_text()`` renders it for the
  operator port's ``/metrics`` (``observability.operator``);
- OTLP/HTTP push, only when ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` is set or
  ``OTEL_METRICS_EXPORTER`` names ``otlp``. ``OTEL_EXPORTER_OTLP_ENDPOINT`` alone does
  *not* turn it on: it is usually a traces backend (Jaeger answers 404 to
  ``/v1/metrics``), and Prometheus already reads every metric. A failing export logs one
  warning, and one line when it recovers, not an error per export.

``snapshot()`` reads every count as a flat dict, for tests and the load tools.

Every metric is on ``/metrics`` from the start, so that Prometheus' ``rate()`` sees the
first increment and an alert on an absent series means what it says: a counter or
histogram made without ``labels`` reads 0 until its first count; one made with
``labels={"outcome": ("acked", "failed")}`` reads 0 for each combination of the values
it lists; one whose labels are an open set (``labels={"peer": None}``: a peer, a route,
a child) has its series appear when first seen, and is declared (``# HELP``/``# TYPE``)
until then. The zeros are added when the counts are read: ``add`` does no more work.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _env

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader, MetricsData
    from opentelemetry.sdk.resources import Resource

__all__ = [
    "LATENCY_BUCKETS_S",
    "SIZE_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "configure_metrics",
    "counter",
    "gauge",
    "histogram",
    "prometheus_text",
    "push_exporters",
    "snapshot",
]

_log = logging.getLogger(__name__)

LabelKey = tuple[tuple[str, Any], ...]
#: What a gauge callback yields: ``(labels, value)`` pairs.
GaugeCallback = Callable[[], Iterable[tuple[dict[str, Any], float]]]
#: A metric's labels, each with its values (a small fixed set) or ``None`` (an open
#: set: peers, routes, children).
Labels = Mapping[str, Iterable[str] | None]

#: Seconds: OpenTelemetry's advice for ``http.server.request.duration`` (0.005-10 s),
#: with 1 ms and 2.5 ms in front for what stays inside one node.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0,
)
#: Counts (a storage batch's writes, a fan-out's recipients): powers of four.
SIZE_BUCKETS: tuple[float, ...] = (1, 4, 16, 64, 256, 1024, 4096, 16384)


def _norm(key: LabelKey) -> LabelKey:
    return tuple(sorted(key)) if len(key) > 1 else key


def _zeros(labels: Labels | None) -> tuple[LabelKey, ...] | None:
    """The label sets a metric shows at 0 before its first count: ``None`` for one
    made without labels (its unlabelled series, while it has no other), else every
    combination of the listed values (none when a label is an open set)."""
    if labels is None:
        return None
    names = sorted(labels)
    values = [labels[name] for name in names]
    if any(v is None for v in values):
        return ()
    return tuple(tuple(zip(names, combo, strict=True))
                 for combo in itertools.product(*values))  # type: ignore[arg-type]


def _with_zeros(merged: dict[LabelKey, Any], zeros: tuple[LabelKey, ...] | None,
                zero: Callable[[], Any]) -> dict[LabelKey, Any]:
    """*merged* (normalised label set -> value) with the metric's zero series added."""
    if zeros is None:
        if not merged:
            merged[()] = zero()
    else:
        for key in zeros:
            if key not in merged:
                merged[key] = zero()
    return merged


class Counter:
    """A monotonic count, optionally split by labels (``add(reason="bad_type")``).

    ``add`` is one dict update keyed by the labels as given; label order is normalised
    only when counts are read. Keep label cardinality small (a reason, a message type,
    a peer node), never an id; *labels* declares them (the module's docstring: which
    series read 0 before the first count). ``add`` takes no lock, by design: greenroom's hot paths
    run on one event loop thread, and a lock would cost several times the update
    itself. Increments racing from several threads on one counter may, rarely, lose a
    count. A count kept elsewhere (the actor system's ``stats``) is read at collection
    through ``observe``.
    """

    __slots__ = ("name", "description", "unit", "_values", "_callbacks", "_zeros")

    def __init__(self, name: str, description: str, unit: str = "",
                 labels: Labels | None = None) -> None:
        self.name = name
        self.description = description
        self.unit = unit
        self._values: dict[LabelKey, int] = {}
        self._callbacks: list[GaugeCallback] = []
        self._zeros = _zeros(labels)

    def add(self, n: int = 1, **labels: Any) -> None:
        """Add *n* (>= 0) to the count for *labels*."""
        if n < 0:
            raise ValueError(f"counter {self.name} cannot decrease (add({n}))")
        key = tuple(labels.items()) if labels else ()
        values = self._values
        values[key] = values.get(key, 0) + n

    def observe(self, callback: GaugeCallback) -> Callable[[], None]:
        """Add ``callback()``'s ``(labels, count)`` pairs at each read (counts that only
        grow, kept by their owner); returns the function that stops it."""
        return _observe(self, callback)

    def _merged(self) -> dict[LabelKey, int]:
        merged: dict[LabelKey, int] = {}
        for key, count in list(self._values.items()):
            norm = _norm(key)
            merged[norm] = merged.get(norm, 0) + count
        for labels, count in _called(self):
            norm = tuple(sorted(labels.items()))
            merged[norm] = merged.get(norm, 0) + count
        return _with_zeros(merged, self._zeros, int)

    def value(self, **labels: Any) -> int:
        """The count for exactly these *labels* (``value()``: the unlabelled one)."""
        return self._merged().get(tuple(sorted(labels.items())), 0)

    def total(self) -> int:
        """The sum over every label set."""
        return sum(self._merged().values())

    def items(self) -> list[tuple[dict[str, Any], int]]:
        """``(labels, count)`` pairs, one per label set seen or declared (at 0)."""
        return [(dict(key), count) for key, count in self._merged().items()]

    def __repr__(self) -> str:
        return f"Counter({self.name!r}, total={self.total()})"


def _observe(metric: Any, callback: GaugeCallback) -> Callable[[], None]:
    metric._callbacks.append(callback)

    def stop() -> None:
        try:
            metric._callbacks.remove(callback)
        except ValueError:
            pass

    return stop


def _called(metric: Any) -> list[tuple[dict[str, Any], Any]]:
    """What *metric*'s callbacks read now; a failing one is logged and skipped."""
    out: list[tuple[dict[str, Any], Any]] = []
    for callback in list(metric._callbacks):
        try:
            out.extend((dict(labels), value) for labels, value in callback())
        except Exception:
            _log.warning("metric %s: a callback failed", metric.name, exc_info=True)
    return out


class Gauge:
    """A value that goes up and down: kept here (``add``/``set``) or read at collection
    from callbacks its owner registers (``observe``; e.g. a run queue's length).

    A callback runs on the collecting thread (a scrape, the OTLP reader's thread): it
    should read, not compute much, and must not raise (a failing one is logged and
    skipped).
    """

    __slots__ = ("name", "description", "unit", "_values", "_callbacks")

    def __init__(self, name: str, description: str, unit: str = "") -> None:
        self.name = name
        self.description = description
        self.unit = unit
        self._values: dict[LabelKey, float] = {}
        self._callbacks: list[GaugeCallback] = []

    def add(self, n: float = 1, **labels: Any) -> None:
        """Add *n* (may be negative) to the value for *labels*."""
        key = tuple(labels.items()) if labels else ()
        values = self._values
        values[key] = values.get(key, 0) + n

    def set(self, value: float, **labels: Any) -> None:
        """Set the value for *labels*."""
        self._values[tuple(labels.items()) if labels else ()] = value

    def observe(self, callback: GaugeCallback) -> Callable[[], None]:
        """Read ``callback()`` at each collection; returns the function that stops it."""
        return _observe(self, callback)

    def items(self) -> list[tuple[dict[str, Any], float]]:
        """``(labels, value)`` pairs: the kept values, then what the callbacks read."""
        merged: dict[LabelKey, float] = {}
        for key, value in list(self._values.items()):
            norm = _norm(key)
            merged[norm] = merged.get(norm, 0) + value
        return [(dict(key), value) for key, value in merged.items()] + _called(self)

    def value(self, **labels: Any) -> float:
        """The value for exactly these *labels* (kept or observed; 0 if none)."""
        want = dict(labels)
        return sum(value for got, value in self.items() if got == want)

    def __repr__(self) -> str:
        return f"Gauge({self.name!r})"


class Histogram:
    """A distribution in fixed buckets: per label set, a list of ints and a sum.

    ``record(value, n)`` counts *n* observations of *value* (one ``bisect``, three adds):
    a fan-out that reached 1,000 sockets in one loop records its latency once, for all
    of them. Buckets are upper bounds, inclusive, as Prometheus and OpenTelemetry read
    them; one more bucket catches what is above the last.
    """

    __slots__ = ("name", "description", "unit", "bounds", "_values", "_start_ns", "_zeros")

    def __init__(self, name: str, description: str, unit: str,
                 bounds: Sequence[float], labels: Labels | None = None) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram {name}: bounds must increase strictly")
        self.name = name
        self.description = description
        self.unit = unit
        self.bounds = tuple(float(b) for b in bounds)
        #: labels -> [bucket counts (len(bounds) + 1), sum, min, max]
        self._values: dict[LabelKey, list[Any]] = {}
        self._start_ns = time.time_ns()
        self._zeros = _zeros(labels)

    def record(self, value: float, n: int = 1, **labels: Any) -> None:
        """Count *n* observations of *value* for *labels*."""
        key = tuple(labels.items()) if labels else ()
        state = self._values.get(key)
        if state is None:
            state = self._values[key] = [[0] * (len(self.bounds) + 1), 0.0, value, value]
        state[0][bisect.bisect_left(self.bounds, value)] += n
        state[1] += value * n
        if value < state[2]:
            state[2] = value
        elif value > state[3]:
            state[3] = value

    def items(self) -> list[tuple[dict[str, Any], list[int], float, float | None,
                                  float | None]]:
        """``(labels, bucket counts, sum, min, max)`` per label set seen or declared
        (no observation: zero counts, min and max ``None``)."""
        merged: dict[LabelKey, list[Any]] = {}
        # a copy made in one C call: listing the items allocates, which can start a
        # GC collection whose hook records into this very dict (python_gc_pause)
        for key, (counts, total, low, high) in self._values.copy().items():
            norm = _norm(key)
            have = merged.get(norm)
            if have is None:
                merged[norm] = [list(counts), total, low, high]
            else:
                have[0] = [a + b for a, b in zip(have[0], counts, strict=True)]
                have[1] += total
                have[2], have[3] = min(have[2], low), max(have[3], high)
        _with_zeros(merged, self._zeros, lambda: [[0] * (len(self.bounds) + 1), 0.0, None, None])
        return [(dict(key), c, s, lo, hi) for key, (c, s, lo, hi) in merged.items()]

    def count(self, **labels: Any) -> int:
        """Observations recorded for exactly these *labels*."""
        want = dict(labels)
        return sum(sum(c) for got, c, *_ in self.items() if got == want)

    def __repr__(self) -> str:
        return f"Histogram({self.name!r})"


Metric = Counter | Gauge | Histogram


class _Registry:
    lock = threading.Lock()
    metrics: dict[str, Metric] = {}
    meter_provider: MeterProvider | None = None
    meter: Any = None
    prometheus: Any = None  # prometheus_client.CollectorRegistry of the provider
    push: list[str] = []  # the push exporters the provider runs


def _get(kind: type, name: str, make: Callable[[], Metric]) -> Any:
    existing = _Registry.metrics.get(name)
    if existing is None:
        with _Registry.lock:
            existing = _Registry.metrics.get(name)
            if existing is None:
                existing = _Registry.metrics[name] = make()
                if _Registry.meter is not None:
                    _mirror(_Registry.meter, existing)
    if not isinstance(existing, kind):
        raise TypeError(f"metric {name!r} is a {type(existing).__name__}, "
                        f"not a {kind.__name__}")
    return existing


def counter(name: str, description: str = "", unit: str = "",
            labels: Labels | None = None) -> Counter:
    """The counter called *name*, created on first use (same name, same object).

    Modules can call this at import time; the first description (and *labels*) given is
    kept. *labels*: the module's docstring (without: one series, 0 from the start).
    """
    return _get(Counter, name, lambda: Counter(name, description, unit, labels))


def gauge(name: str, description: str = "", unit: str = "") -> Gauge:
    """The gauge called *name*, created on first use (same name, same object)."""
    return _get(Gauge, name, lambda: Gauge(name, description, unit))


def histogram(name: str, description: str = "", unit: str = "s",
              bounds: Sequence[float] = LATENCY_BUCKETS_S,
              labels: Labels | None = None) -> Histogram:
    """The histogram called *name*, created on first use (same name, same object).

    *unit* is UCUM as OpenTelemetry's semantic conventions use it (``s`` for a latency,
    ``By`` for bytes, ``{write}`` for a count); Prometheus shows ``s`` as ``_seconds``.
    *labels* as ``counter``'s.
    """
    return _get(Histogram, name, lambda: Histogram(name, description, unit, bounds, labels))


def _label_text(key: LabelKey) -> str:
    return ",".join(f'{k}="{v}"' for k, v in key)


def _key(name: str, labels: dict[str, Any]) -> str:
    return f"{name}{{{_label_text(tuple(sorted(labels.items())))}}}" if labels else name


def snapshot() -> dict[str, float]:
    """Every counter and gauge, and each histogram's ``_count`` and ``_sum``, keyed
    Prometheus-style: ``name`` or ``name{label="value",...}``.

    Flat string keys and number values, so the result is JSON as is.
    """
    out: dict[str, float] = {}
    with _Registry.lock:
        metrics = list(_Registry.metrics.values())
    for m in metrics:
        if isinstance(m, Histogram):
            for labels, counts, total, _, _ in m.items():
                out[_key(f"{m.name}_count", labels)] = sum(counts)
                out[_key(f"{m.name}_sum", labels)] = total
        else:
            for labels, value in m.items():
                out[_key(m.name, labels)] = value
    return out


# -- OpenTelemetry ---------------------------------------------------------------------


def _mirror(meter: Any, m: Metric) -> None:
    """Register *m* with *meter* as an observable instrument (histograms are handed to
    the readers as data points instead: ``_with_histograms``)."""
    if isinstance(m, Histogram):
        return

    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        return [Observation(value, labels or None) for labels, value in m.items()]

    make = (meter.create_observable_counter if isinstance(m, Counter)
            else meter.create_observable_gauge)
    make(m.name, callbacks=[observe], unit=m.unit, description=m.description)


def _histogram_metrics() -> list[Any]:
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        HistogramDataPoint,
    )
    from opentelemetry.sdk.metrics.export import Histogram as HistogramData
    from opentelemetry.sdk.metrics.export import Metric as MetricData

    now = time.time_ns()
    out = []
    with _Registry.lock:
        histograms = [m for m in _Registry.metrics.values() if isinstance(m, Histogram)]
    for h in histograms:
        points = [
            HistogramDataPoint(attributes=labels, start_time_unix_nano=h._start_ns,
                               time_unix_nano=now, count=sum(counts), sum=total,
                               bucket_counts=counts, explicit_bounds=list(h.bounds),
                               min=low, max=high)
            for labels, counts, total, low, high in h.items()
        ]
        if points:
            out.append(MetricData(
                name=h.name, description=h.description, unit=h.unit,
                data=HistogramData(data_points=points,
                                   aggregation_temporality=AggregationTemporality.CUMULATIVE)))
    return out


def _with_histograms(data: MetricsData | None, resource: Resource) -> MetricsData:
    """*data* (what the SDK collected) with the histograms' points added, cumulative."""
    from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    extra = _histogram_metrics()
    resource_metrics = list(data.resource_metrics) if data is not None else []
    if not extra:
        return data if data is not None else MetricsData(resource_metrics=[])
    scope = ScopeMetrics(scope=InstrumentationScope("greenroom.histograms"), metrics=extra,
                         schema_url="")
    if resource_metrics:
        first = resource_metrics[0]
        resource_metrics[0] = ResourceMetrics(resource=first.resource,
                                              scope_metrics=[*first.scope_metrics, scope],
                                              schema_url=first.schema_url)
    else:
        resource_metrics.append(ResourceMetrics(resource=resource, scope_metrics=[scope],
                                                schema_url=""))
    return MetricsData(resource_metrics=resource_metrics)


def _otlp_wanted() -> list[str]:
    """The push exporters to install: OTLP only when the metrics signal asks for it.

    ``OTEL_METRICS_EXPORTER`` (``otlp``, ``console``, ``prometheus``, ``none``; a list)
    wins when set; ``prometheus`` is always served on the operator port, so it adds
    nothing here. Unset: OTLP when ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` is set, and
    not for the shared ``OTEL_EXPORTER_OTLP_ENDPOINT`` (see the module's docstring).
    """
    if _env.sdk_disabled():
        return []
    raw = os.environ.get("OTEL_METRICS_EXPORTER", "").strip()
    if not raw:
        return ["otlp"] if os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip() else []
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if "none" in names:
        return []
    wanted = []
    for name in names:
        if name in ("otlp", "console"):
            wanted.append(name)
        elif name != "prometheus":
            _log.warning("OTEL_METRICS_EXPORTER: unsupported exporter %r ignored", name)
    return wanted


class _OncePerOutage(logging.Filter):
    """Swallows the OTLP exporter's own per-export error lines: ``_PushExporter`` logs
    one warning per outage instead, carrying the last of them."""

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.last = record.getMessage()
            return False
        return True


def _push_exporter(inner: Any, resource: Resource) -> Any:
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    class _PushExporter(MetricExporter):
        """*inner* with the histograms added, and failures logged once per outage."""

        def __init__(self) -> None:
            super().__init__(preferred_temporality=inner._preferred_temporality,
                             preferred_aggregation=inner._preferred_aggregation)
            self.failing = False
            self.quiet = _OncePerOutage()
            logging.getLogger(type(inner).__module__).addFilter(self.quiet)

        def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
                   **kwargs: Any) -> MetricExportResult:
            try:
                result = inner.export(_with_histograms(metrics_data, resource),
                                      timeout_millis=timeout_millis, **kwargs)
            except Exception as err:  # the reader's thread must go on
                self.quiet.last = repr(err)
                result = MetricExportResult.FAILURE
            if result is MetricExportResult.SUCCESS:
                if self.failing:
                    self.failing = False
                    _log.info("metrics export recovered", extra={"exporter": type(inner).__name__})
            elif not self.failing:
                self.failing = True
                _log.warning("metrics export failing; retried every interval, logged again "
                             "when it recovers",
                             extra={"exporter": type(inner).__name__, "error": self.quiet.last})
            return result

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return inner.force_flush(timeout_millis)

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            inner.shutdown(timeout_millis=timeout_millis, **kwargs)
            logging.getLogger(type(inner).__module__).removeFilter(self.quiet)

    return _PushExporter()


def _declared_only(data: MetricsData, resource: Resource) -> MetricsData:
    """*data* with an empty metric for each of the registry's that has no series yet
    (labels that are an open set, a callback not registered yet): Prometheus shows its
    ``# HELP``/``# TYPE`` lines, so every metric is declared from the start."""
    from opentelemetry.sdk.metrics import export as sdk
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    seen = {metric.name for rm in data.resource_metrics for sm in rm.scope_metrics
            for metric in sm.metrics}
    with _Registry.lock:
        missing = [m for m in _Registry.metrics.values() if m.name not in seen]
    if not missing:
        return data
    cumulative = sdk.AggregationTemporality.CUMULATIVE
    empty = [sdk.Metric(name=m.name, description=m.description, unit=m.unit,
                        data=(sdk.Sum(data_points=[], aggregation_temporality=cumulative,
                                      is_monotonic=True) if isinstance(m, Counter)
                              else sdk.Gauge(data_points=[]) if isinstance(m, Gauge)
                              else sdk.Histogram(data_points=[],
                                                 aggregation_temporality=cumulative)))
             for m in missing]
    first, *rest = data.resource_metrics or [
        sdk.ResourceMetrics(resource=resource, scope_metrics=[], schema_url="")]
    scope = sdk.ScopeMetrics(scope=InstrumentationScope("greenroom.declared"), metrics=empty,
                             schema_url="")
    return sdk.MetricsData(resource_metrics=[
        sdk.ResourceMetrics(resource=first.resource,
                            scope_metrics=[*first.scope_metrics, scope],
                            schema_url=first.schema_url), *rest])


def _prometheus_reader(resource: Resource) -> tuple[Any, Any]:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry

    class _Reader(PrometheusMetricReader):
        def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
                             **kwargs: Any) -> None:
            super()._receive_metrics(_declared_only(_with_histograms(metrics_data, resource),
                                                    resource),
                                     timeout_millis, **kwargs)

    registry = CollectorRegistry(auto_describe=False)
    # no otel_scope_* label on every series: one scope, the names say the rest
    return _Reader(scope_info_enabled=False, registry=registry), registry


def configure_metrics(
    resource: Resource | None = None, *, reader: MetricReader | None = None
) -> MeterProvider:
    """Build the process's ``MeterProvider`` over every metric of the registry.

    Readers: Prometheus (always; pull-only, read by ``prometheus_text``), OTLP/HTTP push
    when the metrics signal asks for it (``_otlp_wanted``), and *reader* if given
    (tests pass an ``InMemoryMetricReader``; it sees counters and gauges, histograms go
    to the Prometheus and OTLP readers). The provider is private to greenroom rather than
    OpenTelemetry's global, which can be set only once per process. Calling again
    replaces (and shuts down) the previous one. ``OTEL_SDK_DISABLED=true`` turns the push
    exporters off; ``/metrics`` still serves (pull: nothing runs unless scraped).
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource as _Resource

    resource = resource if resource is not None else _Resource.create({})
    prometheus, registry = _prometheus_reader(resource)
    readers: list[MetricReader] = [prometheus]
    push = _otlp_wanted()
    for name in push:
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )

            inner: Any = OTLPMetricExporter()
        else:
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            inner = ConsoleMetricExporter()
        readers.append(PeriodicExportingMetricReader(_push_exporter(inner, resource)))
    if reader is not None:
        readers.append(reader)
    provider = MeterProvider(metric_readers=readers, resource=resource)

    with _Registry.lock:
        old = _Registry.meter_provider
        _Registry.meter_provider = provider
        _Registry.prometheus = registry
        _Registry.push = push
        _Registry.meter = provider.get_meter("greenroom")
        for m in _Registry.metrics.values():
            _mirror(_Registry.meter, m)
    if old is not None:
        try:
            old.shutdown()
        except Exception:  # a failing final export must not stop reconfiguration
            _log.warning("previous MeterProvider failed to shut down", exc_info=True)
    return provider


def push_exporters() -> list[str]:
    """The push exporters the current provider runs (``[]``: Prometheus only)."""
    return list(_Registry.push)


def prometheus_text() -> tuple[bytes, str]:
    """Every metric in Prometheus' text format, and its content type (``/metrics``).

    Builds the provider with the defaults if nobody configured one yet.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    if _Registry.prometheus is None:
        configure_metrics()
    return generate_latest(_Registry.prometheus), CONTENT_TYPE_LATEST
