"""The counter registry: cheap ints, a flat snapshot, an optional OTel bridge."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from observability import configure_metrics, counter, snapshot


def test_counts_add_up_with_and_without_labels() -> None:
    c = counter("test_envelopes_malformed_total", "Malformed envelopes.")
    c.add()
    c.add(2)
    c.add(reason="bad_type")
    c.add(3, reason="bad_type")
    assert c.value() == 3
    assert c.value(reason="bad_type") == 4
    assert c.value(reason="other") == 0
    assert c.total() == 7


def test_same_name_same_counter_and_first_description_kept() -> None:
    a = counter("test_same_total", "first")
    b = counter("test_same_total", "second")
    assert a is b and b.description == "first"


def test_label_order_does_not_matter() -> None:
    c = counter("test_order_total")
    c.add(kind="x", node="n1")
    c.add(node="n1", kind="x")
    assert c.value(node="n1", kind="x") == 2
    assert c.items() == [({"kind": "x", "node": "n1"}, 2)]


def test_snapshot_is_flat_and_json_ready() -> None:
    c = counter("test_snapshot_total")
    c.add(5)
    c.add(reason="too_big")
    snap = snapshot()
    assert snap["test_snapshot_total"] == 5
    assert snap['test_snapshot_total{reason="too_big"}'] == 1
    assert json.loads(json.dumps(snap)) == snap


def test_counters_never_decrease() -> None:
    with pytest.raises(ValueError):
        counter("test_monotonic_total").add(-1)


def test_no_bridge_without_an_endpoint() -> None:
    assert configure_metrics() is None


def test_bridge_mirrors_counters_made_before_and_after() -> None:
    before = counter("test_bridge_before_total", "made before the bridge")
    before.add(2, reason="x")
    reader = InMemoryMetricReader()
    assert configure_metrics(reader=reader) is not None
    try:
        after = counter("test_bridge_after_total", "made after")
        after.add(5)
        before.add(1, reason="x")
        data = reader.get_metrics_data()
        points = {
            (metric.name, tuple(sorted((point.attributes or {}).items()))): point.value
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            for point in metric.data.data_points
        }
        assert points[("test_bridge_before_total", (("reason", "x"),))] == 3
        assert points[("test_bridge_after_total", ())] == 5
    finally:
        configure_metrics()  # replaces, and shuts down, the provider under test


def test_otlp_endpoint_enables_the_bridge_and_sdk_disabled_does_not(monkeypatch) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import MetricExportResult

    sent = []
    # The final export at shutdown goes nowhere: no traffic, not even to loopback.
    monkeypatch.setattr(
        OTLPMetricExporter,
        "export",
        lambda self, data, **kw: sent.append(data) or MetricExportResult.SUCCESS,
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert configure_metrics() is None
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    assert configure_metrics() is None
    monkeypatch.delenv("OTEL_METRICS_EXPORTER")

    counter("test_bridge_otlp_total").add(4)
    provider = configure_metrics()
    try:
        assert provider is not None
    finally:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        configure_metrics()  # shuts the bridged provider down: its final export
    names = {
        metric.name
        for data in sent
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    assert "test_bridge_otlp_total" in names  # it went to the OTLP exporter
