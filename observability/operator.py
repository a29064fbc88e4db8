"""The operator port: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

One small aiohttp server per node process, on loopback unless told otherwise (what it
shows is for the operator, not for clients). It runs on the node's own event loop, so
``/healthz`` answering means that loop turns, and a scrape reads the metrics' ints on
the thread that writes them.

- ``/healthz``: 200 ``{"status": "ok"}`` while the process serves (liveness).
- ``/readyz``: every check its owner registered (``add_check``: storage reachable, the
  node in the cluster view, the gateway accepting) run concurrently, each within
  ``CHECK_TIMEOUT_S``; 200 when all pass, else 503; the body names each check:
  ``{"status": "ready"|"not ready", "checks": {"storage": {"ok": false, "error": "..."}}}``.
- ``/metrics``: every metric of ``observability.metrics`` in Prometheus' text format.

The checks are callables so that this module knows nothing of storage or the gateway
(observability sits under every other layer).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .metrics import prometheus_text
from .sampling import (
    DEFAULT_BUDGET,
    DEFAULT_IDENTIFY_RATIO,
    IDENTIFY_RATIO_VAR,
    MIN_PROBABILITY,
)

__all__ = ["CHECK_TIMEOUT_S", "HELP", "Check", "OperatorServer"]

_log = logging.getLogger("greenroom.operator")

#: What a readiness check returns: ``None``/``True`` (ready) or a reason it is not
#: (``False`` or a string); raising counts as not ready, with the error named.
Check = Callable[[], Awaitable[Any] | Any]

#: Seconds each readiness check may take before it counts as failed.
CHECK_TIMEOUT_S = 2.0

#: What ``greenroom run --help`` and ``greenroom gateway --help`` say of the operator
#: port and the telemetry variables (README "Operating greenroom" has the rest).
HELP = f"""\
operator port (--operator-port; loopback by default), JSON bodies:
  GET /healthz  200 {{"status": "ok"}} while the process serves (liveness)
  GET /readyz   200 {{"status": "ready", "checks": {{"storage": {{"ok": true}}, ...}}}}
                when every check passes, else 503 {{"status": "not ready", "checks":
                {{"storage": {{"ok": false, "error": "..."}}, ...}}}}; checks: storage (a key
                read answers), gateway (listening, services up, under --max-connections),
                cluster (this node in its live member view; greenroom run only); each
                check gets {CHECK_TIMEOUT_S:g} s
  GET /metrics  every metric, Prometheus text format

telemetry (environment):
  GREENROOM_LOG_LEVEL (info; debug adds the REST access log), GREENROOM_LOG_FORMAT
  (json|console); OTEL_EXPORTER_OTLP_ENDPOINT exports spans over OTLP/HTTP (none set:
  nothing recorded); OTEL_TRACES_SAMPLER/_ARG (default greenroom_fanout, B = \
{DEFAULT_BUDGET:g}:
  p = clamp(B / recipients, {MIN_PROBABILITY:g}, 1)); {IDENTIFY_RATIO_VAR} \
({DEFAULT_IDENTIFY_RATIO:g});
  OTEL_EXPORTER_OTLP_METRICS_ENDPOINT or OTEL_METRICS_EXPORTER=otlp push metrics too;
  GREENROOM_INGRESS_SECRET or GREENROOM_INGRESS_SECRET_FILE turn the ingress on
"""


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


class OperatorServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (``port=0``: any free)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9464) -> None:
        self.host = host
        self.port = port
        self.checks: dict[str, Check] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_check(self, name: str, check: Check) -> None:
        """``/readyz`` runs ``check`` under ``name`` (the same name replaces it)."""
        self.checks[name] = check

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        _log.info("operator endpoints serving", extra={"url": self.url})

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        body, content_type = prometheus_text()
        # aiohttp takes the charset apart from the media type
        media, _, params = content_type.partition(";")
        response = web.Response(body=body, content_type=media.strip())
        response.headers["Content-Type"] = content_type
        return response

    async def _healthz(self, _request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(self.checks[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        ready = all(result["ok"] for result in results)
        return _json(200 if ready else 503,
                     {"status": "ready" if ready else "not ready", "checks": checks})

    @staticmethod
    async def _run(check: Check) -> dict[str, Any]:
        try:
            outcome = check()
            if inspect.isawaitable(outcome):
                outcome = await asyncio.wait_for(outcome, CHECK_TIMEOUT_S)
        except TimeoutError:
            return {"ok": False, "error": f"no answer within {CHECK_TIMEOUT_S:g} s"}
        except Exception as err:  # a failing check is the answer, not a 500
            return {"ok": False, "error": f"{type(err).__name__}: {err}"[:300]}
        if outcome is None or outcome is True:
            return {"ok": True}
        return {"ok": False, "error": "failed" if outcome is False else str(outcome)[:300]}
