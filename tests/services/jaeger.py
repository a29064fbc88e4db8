"""A real Jaeger (v1 all-in-one, in-memory storage) for the end-to-end tracing test.

There is no Docker and no Jaeger package here, but the Go module proxy serves Jaeger's
module, so the binary is built from it (once per machine, like the Cassandra jars):
``go mod download github.com/jaegertracing/jaeger@<version>`` and ``go build
./cmd/all-in-one`` inside the downloaded module. ``go install module@version`` cannot
do it: the module's go.mod has a ``replace`` line, which ``go install`` refuses. Module
and build caches live under ``~/.cache/greenroom/jaeger`` (GOMODCACHE, GOCACHE: per
machine, outside the checkout, so CI's fresh clone reuses them), so a second build is a
link step and a cached binary is reused as is. The first build downloads
~700 MB of modules and compiles for minutes on 2 cores.

Why v1's all-in-one and not v2 (``cmd/jaeger``, same module): every listener is a flag,
so each can be put on a free loopback port without writing a collector config, and
its query API (``GET /api/traces?service=...``) returns spans with their process
(service name and resource attributes as tags) and references (parent, links).

Library use::

    jaeger = JaegerServer.isolated("pytest-123")
    jaeger.start()                   # builds the binary if missing, waits for the API
    jaeger.otlp_http_url             # OTEL_EXPORTER_OTLP_ENDPOINT for the code under test
    jaeger.traces("greenroom")       # what the query API holds for a service
    jaeger.stop()

Command line: ``python -m tests.services.jaeger fetch|start|stop|status`` (``fetch``
builds the binary; ``start`` runs one on the default ports, 4318 and 16686).

Environment: ``GREENROOM_JAEGER_VERSION`` (v1.76.0), ``GREENROOM_GO`` (a ``go``
binary; else ``go`` on PATH or /usr/local/go/bin/go), ``GREENROOM_JAEGER_DIR``
(``$XDG_CACHE_HOME/greenroom/jaeger``, else ``~/.cache/greenroom/jaeger``),
``GREENROOM_JAEGER_BIN`` (a prebuilt all-in-one to use
instead of building one).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.services import process
from tests.services.process import ProcessService, ServiceError, free_port, port_open

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = "github.com/jaegertracing/jaeger"
DEFAULT_VERSION = "v1.76.0"
GO_CANDIDATES = ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")
BUILD_TIMEOUT_S = 60 * 60  # a fresh machine downloads ~700 MB and compiles ~1,500 packages
#: the first test that waits for the server may wait for a build from scratch
BOOT_ALLOWANCE_S = BUILD_TIMEOUT_S + 120


class JaegerError(ServiceError):
    """Jaeger could not be built, started or queried; the message says why."""


def find_go() -> str:
    found = process.find_executable(
        "GREENROOM_GO", (shutil.which("go") or "", *GO_CANDIDATES), JaegerError)
    if found:
        return found
    raise JaegerError(
        "no Go toolchain found (go on PATH, /usr/local/go/bin/go): the end-to-end "
        "tracing test builds Jaeger from its Go module; install Go >= 1.24 or set "
        "GREENROOM_GO (or GREENROOM_JAEGER_BIN to a prebuilt jaeger all-in-one)"
    )


def _clean_env() -> dict[str, str]:
    """The environment without OTEL_*: Jaeger traces itself from those variables, and
    a test's exporter settings must not make it export to itself (or elsewhere)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


@dataclass
class JaegerServer(ProcessService):
    """One Jaeger all-in-one on 127.0.0.1, its binary and run dir under ``base``."""

    label = "Jaeger"
    error = JaegerError
    pid_name = "jaeger.pid"
    log_name = "jaeger.log"
    fetched = "jaeger all-in-one at {path}"

    base: Path = field(
        default_factory=lambda: Path(
            os.environ.get("GREENROOM_JAEGER_DIR")
            or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            / "greenroom" / "jaeger"
        )
    )
    version: str = field(
        default_factory=lambda: os.environ.get("GREENROOM_JAEGER_VERSION", DEFAULT_VERSION)
    )
    otlp_http_port: int = 4318
    query_port: int = 16686
    # Listeners we do not use still bind; each gets its own free loopback port.
    other_ports: dict[str, int] = field(
        default_factory=lambda: {
            "collector.otlp.grpc.host-port": 4317,
            "collector.http-server.host-port": 14268,
            "collector.grpc-server.host-port": 14250,
            "query.grpc-server.host-port": 16685,
            "admin.http.host-port": 14269,
        }
    )
    host: str = "127.0.0.1"
    name: str = "default"

    @classmethod
    def isolated(cls, name: str) -> JaegerServer:
        """A server with its own run dir and free ports (one per test run)."""
        server = cls(name=name, otlp_http_port=free_port(), query_port=free_port())
        server.other_ports = {flag: free_port() for flag in server.other_ports}
        return server

    # -- paths ---------------------------------------------------------------------
    @property
    def binary(self) -> Path:
        explicit = os.environ.get("GREENROOM_JAEGER_BIN")
        if explicit:
            return Path(explicit)
        return self.base / "bin" / f"jaeger-all-in-one-{self.version}"

    @property
    def otlp_http_url(self) -> str:
        """The base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the SDK appends /v1/traces)."""
        return f"http://{self.host}:{self.otlp_http_port}"

    @property
    def query_url(self) -> str:
        return f"http://{self.host}:{self.query_port}"

    # -- build ---------------------------------------------------------------------
    def binary_ready(self) -> bool:
        return os.access(self.binary, os.X_OK)

    def fetch(self, quiet: bool = True) -> Path:
        return self.build(quiet)

    def build(self, quiet: bool = True) -> Path:
        """Build the all-in-one binary from the Go module (cached by version)."""
        if os.environ.get("GREENROOM_JAEGER_BIN") and not self.binary_ready():
            raise JaegerError(f"GREENROOM_JAEGER_BIN={self.binary} is not an executable")
        return process.fetch_once(self.base / "build.lock", self.binary_ready,
                          lambda: self._build(quiet), self.binary)

    def go_env(self) -> dict[str, str]:
        return {
            **_clean_env(),
            "GOMODCACHE": str(self.base / "gomod"),
            "GOCACHE": str(self.base / "gocache"),
            # -mod=mod: build with the module's own go.mod/go.sum as the proxy serves
            # them, whatever GOFLAGS the machine has.
            "GOFLAGS": "-mod=mod",
            # the Go on this machine builds it (go.mod asks for 1.24+); never download
            # a toolchain mid-test
            "GOTOOLCHAIN": "local",
        }

    def _build(self, quiet: bool) -> Path:
        go = find_go()
        env = self.go_env()
        log = self.base / "build.log"
        with open(log, "w") as out:
            out.write(f"building {MODULE}@{self.version} cmd/all-in-one with {go}\n")
        if not quiet:
            print(f"building Jaeger {self.version} (minutes on a fresh machine); log: {log}",
                  flush=True)
        t0 = time.monotonic()
        download = self._run_go(
            [go, "mod", "download", "-json", f"{MODULE}@{self.version}"],
            cwd=self.base, env=env, log=log, timeout=BUILD_TIMEOUT_S,
        )
        try:
            module_dir = Path(json.loads(download)["Dir"])
        except (ValueError, KeyError) as exc:
            raise JaegerError(
                f"`go mod download {MODULE}@{self.version}` did not name the module's "
                f"directory ({exc!r}); its output:\n{download[-2000:]}"
            ) from None
        target = self.binary
        target.parent.mkdir(parents=True, exist_ok=True)
        # its own name per build: a build orphaned by an interrupted run may still be
        # linking into its own file
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        for stale in target.parent.glob(f"{target.name}.partial-*"):
            stale.unlink(missing_ok=True)
        self._run_go(
            [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(partial), "./cmd/all-in-one"],
            cwd=module_dir, env=env, log=log,
            timeout=max(60.0, BUILD_TIMEOUT_S - (time.monotonic() - t0)),
        )
        partial.rename(target)  # only a complete binary ever has the final name
        return target

    def _run_go(self, cmd: list[str], *, cwd: Path, env: dict[str, str], log: Path,
                timeout: float) -> str:
        """Run one go command at low priority, its stderr appended to ``log``."""
        with open(log, "a") as errors:
            errors.write("$ " + " ".join(cmd) + "\n")
            errors.flush()
            try:
                proc = subprocess.run(
                    ["nice", "-n", "10", *cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                    stderr=errors, text=True, timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                raise JaegerError(
                    f"building Jaeger took over {timeout:.0f}s ({' '.join(cmd[:3])}); "
                    f"see {log}"
                ) from None
        if proc.returncode != 0:
            with open(log, "a") as errors:  # `go mod download -json` says why on stdout
                errors.write(proc.stdout)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise JaegerError(
                f"building Jaeger {self.version} from the Go module failed at "
                f"`{' '.join(cmd[:3])}` (exit {proc.returncode}); last lines of {log}:\n{tail}"
            )
        return proc.stdout

    # -- process -------------------------------------------------------------------
    def command(self) -> list[str]:
        ports = {
            "collector.otlp.http.host-port": self.otlp_http_port,
            "query.http-server.host-port": self.query_port,
            **self.other_ports,
        }
        return [
            str(self.binary),
            *(f"--{flag}={self.host}:{port}" for flag, port in ports.items()),
            "--memory.max-traces=100000",
            "--log-level=warn",
        ]

    def spawn(self) -> int:
        """Start the server (without waiting); returns its pid. The binary must exist."""
        if self.pid() is not None:
            return self.pid()  # type: ignore[return-value]
        if not self.binary_ready():
            raise JaegerError(f"no Jaeger binary at {self.binary}: build it first")
        self.check_ports_free((self.otlp_http_port, self.query_port,
                               *self.other_ports.values()))
        return self.popen(env={**_clean_env(), "SPAN_STORAGE_TYPE": "memory"})

    def ready(self) -> bool:
        """OTLP/HTTP accepts connections and the query API answers."""
        if not port_open(self.otlp_http_port, self.host):
            return False
        try:
            self.get("/api/services", timeout=2)
        except (JaegerError, OSError):
            return False
        return True

    def not_answering(self) -> str:
        return f"Jaeger's query API did not answer on {self.query_url}"

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the server by the pid it was started with. False if none was running."""
        stopped = self.end(signal.SIGTERM, timeout, poll_s=0.05)
        self.remove_run_dir()
        return stopped

    def is_ours(self, pid: int, run_dir: Path) -> bool:
        """The pid runs a binary from our bin dir (not a recycled pid)."""
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return False
        return exe.startswith(str(self.base / "bin"))

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return f"stopped (binary {'built' if self.binary_ready() else 'not built'})"
        return (f"running pid={pid} otlp_http={self.otlp_http_url} query={self.query_url} "
                f"ready={self.ready()}")

    # -- query API -----------------------------------------------------------------
    def get(self, path: str, timeout: float = 10.0, **params: Any) -> Any:
        """GET ``path`` on the query API; the decoded JSON body."""
        url = self.query_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()[:500].decode(errors="replace")
            raise JaegerError(f"GET {url}: HTTP {exc.code}: {body}") from None

    def services(self) -> list[str]:
        return list(self.get("/api/services").get("data") or [])

    def traces(self, service: str, limit: int = 1000, lookback: str = "1h") -> list[dict]:
        """Every trace the server holds with a span of ``service`` (Jaeger's JSON model)."""
        return list(self.get("/api/traces", service=service, limit=limit,
                             lookback=lookback).get("data") or [])

    def trace(self, trace_id: str) -> dict | None:
        try:
            found = self.get(f"/api/traces/{trace_id}").get("data") or []
        except JaegerError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        return found[0] if found else None


def main(argv: list[str] | None = None) -> int:
    return process.main(JaegerServer(), argv)


if __name__ == "__main__":
    sys.exit(main())
