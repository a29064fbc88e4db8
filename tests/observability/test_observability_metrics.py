"""The metric registry: cheap ints, a flat snapshot, OpenTelemetry at collection time."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from observability import configure_metrics, counter, snapshot
from observability.metrics import gauge, histogram, prometheus_text, push_exporters


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



def test_gauges_keep_values_and_read_callbacks_until_stopped() -> None:
    g = gauge("test_gauge_sessions", "sessions")
    g.add(3, state="connected")
    g.add(-1, state="connected")
    g.set(7, state="detached")
    stop = g.observe(lambda: [({"node": "n1"}, 42)])
    assert g.value(state="connected") == 2
    assert g.value(state="detached") == 7
    assert g.value(node="n1") == 42
    assert snapshot()['test_gauge_sessions{node="n1"}'] == 42
    stop()
    assert g.value(node="n1") == 0


def test_a_failing_callback_is_skipped_not_raised() -> None:
    g = gauge("test_gauge_failing")

    def broken() -> list:
        raise RuntimeError("boom")

    stop = g.observe(broken)
    try:
        assert g.items() == []
        prometheus_text()  # a scrape still answers
    finally:
        stop()


def test_counter_reads_counts_kept_elsewhere() -> None:
    stats = {"overloaded": 5}
    c = counter("test_observed_total")
    c.add(1, node="n1")
    stop = c.observe(lambda: [({"node": "n1"}, stats["overloaded"])])
    try:
        assert c.value(node="n1") == 6
    finally:
        stop()


def test_one_name_one_kind() -> None:
    counter("test_kind_total")
    with pytest.raises(TypeError):
        gauge("test_kind_total")


def test_histogram_buckets_weights_and_bounds() -> None:
    h = histogram("test_latency", "a latency", "s", bounds=(0.01, 0.1, 1.0))
    h.record(0.005)  # first bucket
    h.record(0.01)  # bounds are inclusive upper bounds
    h.record(0.5, n=10)  # a fan-out batch: ten deliveries at once
    h.record(3.0, route="/x")  # another label set, above the last bound
    [(labels, counts, total, low, high)] = [i for i in h.items() if not i[0]]
    assert counts == [2, 0, 10, 0]
    assert total == pytest.approx(0.005 + 0.01 + 5.0)
    assert (low, high) == (0.005, 0.5)
    assert h.count() == 12 and h.count(route="/x") == 1
    snap = snapshot()
    assert snap["test_latency_count"] == 12
    assert snap['test_latency_count{route="/x"}'] == 1
    with pytest.raises(ValueError):
        histogram("test_bad_bounds", bounds=(1.0, 0.5))


def test_prometheus_text_has_counters_gauges_and_histograms() -> None:
    counter("test_prom_total", "a count").add(3, reason="x")
    gauge("test_prom_gauge", "a level").set(4)
    histogram("test_prom_latency", "a latency", "s", bounds=(0.1, 1.0)).record(0.2, n=5)
    configure_metrics()
    text, content_type = prometheus_text()
    lines = text.decode().splitlines()
    assert content_type.startswith("text/plain")
    assert 'test_prom_total{reason="x"} 3.0' in lines
    assert "test_prom_gauge 4.0" in lines
    assert 'test_prom_latency_seconds_bucket{le="0.1"} 0.0' in lines
    assert 'test_prom_latency_seconds_bucket{le="1.0"} 5.0' in lines
    assert 'test_prom_latency_seconds_bucket{le="+Inf"} 5.0' in lines
    assert "test_prom_latency_seconds_count 5.0" in lines


class _TracesOnly(http.server.BaseHTTPRequestHandler):
    """A traces-only OTLP backend: /v1/traces accepted, anything else 404 (Jaeger)."""

    posts: list[str] = []
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        type(self).bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        type(self).posts.append(self.path)
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def traces_only() -> Iterator[str]:
    _TracesOnly.posts = []
    _TracesOnly.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TracesOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_which_variables_turn_otlp_metrics_on(monkeypatch, traces_only: str) -> None:
    configure_metrics()
    assert push_exporters() == []  # nothing set: Prometheus only
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", traces_only)
    configure_metrics()
    assert push_exporters() == []  # the shared endpoint is the traces backend's
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    configure_metrics()
    assert push_exporters() == ["otlp"]
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    configure_metrics()
    assert push_exporters() == []
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.delenv("OTEL_METRICS_EXPORTER")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{traces_only}/v1/metrics")
    configure_metrics()
    assert push_exporters() == ["otlp"]
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    configure_metrics()
    assert push_exporters() == []
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    monkeypatch.delenv("OTEL_METRICS_EXPORTER")
    configure_metrics()


def test_a_traces_only_endpoint_gets_no_metrics_and_logs_nothing(
        monkeypatch, traces_only: str, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", traces_only)
    counter("test_traces_only_total").add()
    with caplog.at_level(logging.DEBUG):
        provider = configure_metrics()
        assert provider.force_flush(5_000)
        configure_metrics()  # shuts it down: a final export would happen now
    assert _TracesOnly.posts == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_failing_metrics_endpoint_logs_one_warning(
        monkeypatch, traces_only: str, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{traces_only}/v1/metrics")
    counter("test_failing_export_total").add()
    histogram("test_failing_export_latency").record(0.01)
    with caplog.at_level(logging.DEBUG):
        provider = configure_metrics()
        for _ in range(3):
            provider.force_flush(5_000)
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        configure_metrics()
    assert _TracesOnly.posts.count("/v1/metrics") >= 3  # it was tried every time
    # counters as observable instruments, histograms as data points, in one request
    assert all(b"test_failing_export_total" in body and b"test_failing_export_latency" in body
               for body in _TracesOnly.bodies)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in loud] == [
        "metrics export failing; retried every interval, logged again when it recovers"]
    assert "404" in loud[0].error


def test_every_metric_is_exported_before_its_first_count() -> None:
    """Without labels: 0 from the start; fixed label values: 0 for each combination;
    an open label set (a peer): no series until seen, but declared on /metrics."""
    plain = counter("test_zero_plain_total", "unlabelled")
    fixed = counter("test_zero_fixed_total", "fixed labels",
                    labels={"outcome": ("acked", "failed"), "kind": ("a",)})
    per_peer = counter("test_zero_peer_total", "by peer", labels={"peer": None})
    stages = histogram("test_zero_stage", "by stage", "s", bounds=(0.1, 1.0),
                       labels={"stage": ("one", "two")})
    assert plain.items() == [({}, 0)]
    assert sorted(fixed.items(), key=str) == [({"kind": "a", "outcome": "acked"}, 0),
                                              ({"kind": "a", "outcome": "failed"}, 0)]
    assert per_peer.items() == []
    assert [(labels, counts, low) for labels, counts, _, low, _ in stages.items()] == [
        ({"stage": "one"}, [0, 0, 0], None), ({"stage": "two"}, [0, 0, 0], None)]
    configure_metrics()
    lines = prometheus_text()[0].decode().splitlines()
    assert "test_zero_plain_total 0.0" in lines
    assert 'test_zero_fixed_total{kind="a",outcome="failed"} 0.0' in lines
    assert "# TYPE test_zero_peer_total counter" in lines
    assert not any(line.startswith("test_zero_peer_total") for line in lines)
    assert 'test_zero_stage_seconds_bucket{le="+Inf",stage="two"} 0.0' in lines

    # counting adds to the declared series, and adds no unlabelled one
    fixed.add(outcome="acked", kind="a")
    per_peer.add(3, peer="n2")
    stages.record(0.5, stage="two")
    assert fixed.value(outcome="acked", kind="a") == 1 and len(fixed.items()) == 2
    assert per_peer.items() == [({"peer": "n2"}, 3)]
    assert stages.count(stage="two") == 1 and stages.count(stage="one") == 0
    lines = prometheus_text()[0].decode().splitlines()
    assert 'test_zero_peer_total{peer="n2"} 3.0' in lines
    assert 'test_zero_fixed_total{kind="a",outcome="acked"} 1.0' in lines


def test_a_count_made_with_labels_replaces_the_placeholder_zero() -> None:
    """A counter made without ``labels`` but counted with some shows 0 until then, and
    only its labelled series after (no stray unlabelled 0 beside them)."""
    c = counter("test_undeclared_total")
    assert c.items() == [({}, 0)]
    c.add(reason="x")
    assert c.items() == [({"reason": "x"}, 1)]


def test_gc_collections_are_timed_by_generation_while_watched() -> None:
    import gc

    from observability.actor_metrics import _gc_pause, watch_gc

    def counts() -> list[int]:
        return [_gc_pause.count(generation=g) for g in ("0", "1", "2")]

    stop, again = watch_gc(), watch_gc()  # two watchers (two bases): one hook
    gc.disable()  # only the collections asked for here (the callbacks fire for those)
    try:
        before = counts()
        gc.collect(0)
        gc.collect(2)
        assert [a - b for a, b in zip(counts(), before, strict=True)] == [1, 0, 1]
        stop()
        gc.collect(1)  # the other watcher still watches
        assert [a - b for a, b in zip(counts(), before, strict=True)] == [1, 1, 1]
    finally:
        stop()  # a second stop changes nothing
        again()
        gc.enable()
    before = counts()
    gc.collect(0)
    assert counts() == before  # nobody watches: the hook is gone


def test_a_gc_end_without_its_start_is_not_a_pause() -> None:
    # the hook installed in the middle of a collection sees only its end
    from observability.actor_metrics import _gc_pause, _on_gc

    before = _gc_pause.count(generation="1")
    _on_gc("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    assert _gc_pause.count(generation="1") == before


def test_the_loop_lag_probe_sees_a_stalled_loop_and_stops() -> None:
    import asyncio
    import gc
    import time

    import uvloop

    from observability.actor_metrics import _loop_lag, watch_loop
    from tests.cycles import cyclic_garbage_of

    def late() -> int:  # probes that ran more than 25 ms late
        [(_labels, counts, *_rest)] = _loop_lag.items()
        return sum(counts[_loop_lag.bounds.index(0.025) + 1:])

    async def main() -> tuple[int, int, int, int, int]:
        stop = watch_loop(asyncio.get_running_loop())
        await asyncio.sleep(0.06)
        gc.collect()
        gc.disable()
        try:
            before = late()
            time.sleep(0.08)  # the loop stalls: a probe fell due in its first 20 ms
            await asyncio.sleep(0.06)
            after = late()
            stop()
            await asyncio.sleep(0.03)
            count = _loop_lag.count()
            await asyncio.sleep(0.1)
            return before, after, count, _loop_lag.count(), cyclic_garbage_of("observability")
        finally:
            gc.enable()

    before, after, count, later, cycles = uvloop.run(main())
    assert after - before >= 1
    assert later == count  # stopped: no more probes
    assert count > 0 and cycles == 0  # a probe a tick, and none left in a cycle
