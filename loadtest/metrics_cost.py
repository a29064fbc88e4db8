"""What the metrics cost a delivery: ``python -m loadtest.metrics_cost``.

Times, per call, what the hot paths pay (best of 5 runs of 200,000 calls, so another
process's burst does not count): per socket write ``gateway_out_bytes_total.add(n)``;
per fan-out batch the deliveries count, the message's creation time read from its frame
and one latency record for the whole batch; and, for comparison, the same count and
record through OpenTelemetry's synchronous instruments, which greenroom does not use on
hot paths. Prints one JSON object (microseconds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from gateway.fanout import _created_ms
from gateway.protocol import Encoding, PreparedDispatch
from observability.metrics import counter, histogram
from storage.snowflake import SnowflakeGenerator

N = 200_000


def per_call_us(fn: Callable[[], None], n: int = N) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def main() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    bytes_out = counter("bench_out_bytes_total")
    deliveries = counter("bench_deliveries_total")
    latency = histogram("bench_delivery_latency")
    message_id = SnowflakeGenerator().next_id()
    dispatch = PreparedDispatch("MESSAGE_CREATE", {"id": str(message_id), "content": "hi"})
    dispatch.encoded(Encoding.JSON)  # the sessions' frames have encoded it already

    def per_batch(recipients: int) -> Callable[[], None]:
        def run() -> None:
            deliveries.add(recipients)
            created = _created_ms(dispatch)
            if created is not None:
                latency.record(time.time() - created / 1000, recipients)
        return run

    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")
    otel_counter = meter.create_counter("otel_bytes")
    otel_histogram = meter.create_histogram("otel_latency", unit="s")
    loop_us = per_call_us(lambda: None)
    batch_us = per_call_us(per_batch(1)) - loop_us
    figures = {
        "empty_call_us": round(loop_us, 3),
        "bytes_counter_add_us": round(per_call_us(lambda: bytes_out.add(512)) - loop_us, 3),
        "per_batch_us": round(batch_us, 3),
        "per_delivery_us_batch_of_1": round(batch_us, 3),
        "per_delivery_us_batch_of_1000": round(batch_us / 1000, 5),
        "otel_sdk_counter_add_us": round(per_call_us(lambda: otel_counter.add(512), 20_000)
                                         - loop_us, 3),
        "otel_sdk_histogram_record_us": round(
            per_call_us(lambda: otel_histogram.record(0.003), 20_000) - loop_us, 3),
    }
    figures["per_delivery_total_us_batch_of_1"] = round(
        figures["bytes_counter_add_us"] + figures["per_delivery_us_batch_of_1"], 3)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
