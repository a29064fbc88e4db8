"""A minimal local OTLP/HTTP collector for benchmarks: accepts what an OpenTelemetry SDK
exports and counts it, keeps nothing.

``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs`` (protobuf, optionally gzip) are
answered 200 with an empty body, which the OTLP/HTTP exporters take as success; traces
are decoded to count spans (what the node paid to make and send). Runs on the caller's
event loop and binds loopback only, so a bench needs no Jaeger and no network.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["OtlpSink"]


@dataclass
class OtlpSink:
    """``await sink.start()`` then point ``OTEL_EXPORTER_OTLP_ENDPOINT`` at ``sink.url``."""

    requests: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    spans: int = 0
    #: spans by name (``rest.post_message``: one per traced message)
    names: dict[str, int] = field(default_factory=dict)
    bad: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for signal in ("traces", "metrics", "logs"):
            app.router.add_post(f"/v1/{signal}", self._handler(signal))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _handler(self, signal: str):
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            self.requests[signal] = self.requests.get(signal, 0) + 1
            self.bytes[signal] = self.bytes.get(signal, 0) + len(body)
            if signal == "traces":
                self._count_spans(body, request.headers.get("Content-Encoding", ""))
            return web.Response(status=200, body=b"",
                                content_type="application/x-protobuf")

        return handle

    def _count_spans(self, body: bytes, encoding: str) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            message = ExportTraceServiceRequest.FromString(body)
        except Exception:  # not ours to judge; counted, never fatal
            self.bad += 1
            return
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                self.spans += len(scope.spans)
                for span in scope.spans:
                    self.names[span.name] = self.names.get(span.name, 0) + 1

    def snapshot(self) -> dict[str, object]:
        return {"requests": dict(self.requests), "bytes": dict(self.bytes),
                "spans": self.spans, "names": dict(self.names), "undecodable": self.bad}
