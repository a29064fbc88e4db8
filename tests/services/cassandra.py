"""A real Apache Cassandra 5.0 node for the tests, built from Maven Central jars on Java 17.

No Cassandra/ScyllaDB server can be installed from Debian or PyPI here and there is no
Docker, but Maven Central serves ``cassandra-all`` with its whole runtime classpath.
This module resolves those jars with ``mvn`` into ``.cache/cassandra/lib`` (once; later
runs reuse them), writes a minimal yaml and a WARN-level logback file, starts
``CassandraDaemon`` in its own process session and stops it by the pid it started.

Library use::

    node = CassandraNode()
    node.start()          # idempotent: returns at once if our node already answers
    ...
    node.stop()           # by pid; cleans the data dir unless keep_data=True

Command line: ``python -m tests.services.cassandra start|stop|status|fetch``.

Environment: ``GREENROOM_CASSANDRA_VERSION`` (5.0.9), ``GREENROOM_CASSANDRA_PORT``
(9042), ``GREENROOM_CASSANDRA_STORAGE_PORT`` (7000), ``GREENROOM_JAVA`` (a Java 17
``java``), ``GREENROOM_CASSANDRA_HEAP`` (1g), ``GREENROOM_CASSANDRA_DIR``
(``<repo>/.cache/cassandra``), ``GREENROOM_CASSANDRA_COMMITLOG`` (batch),
``GREENROOM_CASSANDRA_JVM_OPTS`` (extra JVM flags, space-separated).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VERSION = "5.0.9"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
JAVA17_CANDIDATES = (
    "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
    "/usr/lib/jvm/java-1.17.0-openjdk-amd64/bin/java",
    "/usr/lib/jvm/openjdk-17/bin/java",
)

# From Cassandra's conf/jvm17-server.options: without them the daemon dies at start-up
# with IllegalAccessException on sun.nio.ch (verified here on 5.0.9 / OpenJDK 17.0.15).
JPMS_FLAGS = [
    "-Djdk.attach.allowAttachSelf=true",
    *(
        f"--add-exports={m}=ALL-UNNAMED"
        for m in (
            "java.base/jdk.internal.misc",
            "java.base/java.lang.ref",
            "java.management.rmi/com.sun.jmx.remote.internal.rmi",
            "java.management/com.sun.jmx.remote.security",
            "java.rmi/sun.rmi.registry",
            "java.rmi/sun.rmi.server",
            "java.sql/java.sql",
            "jdk.unsupported/sun.misc",
            "jdk.compiler/com.sun.tools.javac.file",
            "jdk.attach/sun.tools.attach",
        )
    ),
    *(
        f"--add-opens={m}=ALL-UNNAMED"
        for m in (
            "java.base/java.lang.module",
            "java.base/jdk.internal.loader",
            "java.base/jdk.internal.ref",
            "java.base/jdk.internal.reflect",
            "java.base/jdk.internal.math",
            "java.base/jdk.internal.module",
            "java.base/jdk.internal.util.jar",
            "jdk.management/com.sun.management.internal",
            "java.base/sun.nio.ch",
            "java.base/java.io",
            "java.base/java.lang.reflect",
            "java.base/java.lang",
            "java.base/java.util",
            "java.base/java.nio",
            "jdk.compiler/com.sun.tools.javac",
        )
    ),
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
]

POM_TEMPLATE = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>greenroom.tests</groupId>
  <artifactId>cassandra-test-node</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""

# 4.1+/5.0 key names only: unknown or pre-4.0 keys make the daemon refuse to start.
YAML_TEMPLATE = """cluster_name: greenroom-test
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:{storage_port}"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {storage_port}
native_transport_port: {port}
start_native_transport: true
{commitlog}
concurrent_compactors: 1
hinted_handoff_enabled: false
auto_snapshot: false
memtable_heap_space: 256MiB
key_cache_size: 16MiB
batch_size_warn_threshold: 64KiB
batch_size_fail_threshold: 512KiB
"""

LOGBACK = """<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


class CassandraError(RuntimeError):
    """The test node could not be fetched, started or reached; the message says why."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise CassandraError(f"{name}={raw!r} is not an integer") from None


def find_java() -> str:
    """A Java 17 binary: Cassandra 5.0 runs on 11 or 17 only (the Temurin 25 here won't do)."""
    explicit = os.environ.get("GREENROOM_JAVA")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise CassandraError(f"GREENROOM_JAVA={explicit!r} is not an executable")
        return explicit
    for candidate in JAVA17_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    for candidate in sorted(Path("/usr/lib/jvm").glob("*17*/bin/java")):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise CassandraError(
        "no Java 17 found under /usr/lib/jvm (Cassandra 5.0 needs Java 11 or 17); "
        "install openjdk-17-jre-headless or set GREENROOM_JAVA"
    )


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _is_cassandra(pid: int, run_dir: Path) -> bool:
    """The pid is a CassandraDaemon using ``run_dir`` (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "CassandraDaemon" in cmdline and str(run_dir) in cmdline


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive: it is our child that has exited but was not reaped.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@dataclass
class CassandraNode:
    """One single-node Cassandra cluster on 127.0.0.1, managed through files under ``base``."""

    base: Path = field(
        default_factory=lambda: Path(
            os.environ.get("GREENROOM_CASSANDRA_DIR", REPO_ROOT / ".cache" / "cassandra")
        )
    )
    version: str = field(
        default_factory=lambda: os.environ.get("GREENROOM_CASSANDRA_VERSION", DEFAULT_VERSION)
    )
    port: int = field(default_factory=lambda: _env_int("GREENROOM_CASSANDRA_PORT", 9042))
    storage_port: int = field(
        default_factory=lambda: _env_int("GREENROOM_CASSANDRA_STORAGE_PORT", 7000)
    )
    heap: str = field(default_factory=lambda: os.environ.get("GREENROOM_CASSANDRA_HEAP", "1g"))
    # "batch": a write is acknowledged only after its commitlog segment is fsynced (the
    # driver sees durability on this single node; concurrent writes share one fsync).
    # "periodic" acks first and syncs every 10 s: a SIGKILL then loses acked writes
    # (seen here: 145 of ~1,000 in the fault test).
    commitlog_sync: str = field(
        default_factory=lambda: os.environ.get("GREENROOM_CASSANDRA_COMMITLOG", "batch")
    )
    host: str = "127.0.0.1"
    # Each name has its own run dir (config, pid, data): the CLI's node is "default";
    # every pytest run and the benchmark use their own name and free ports, so that
    # concurrent runs on one machine never stop or kill each other's node.
    name: str = "default"
    # cassandra.unsafesystem skips flushing system tables - including the schema, which
    # is then lost if the process is killed (seen here: a keyspace vanished after a
    # SIGKILL). Off by default, since the fault test kills the node.
    unsafe_system: bool = False

    # -- paths ---------------------------------------------------------------------
    @property
    def lib(self) -> Path:
        return self.base / "lib"

    @classmethod
    def isolated(cls, name: str, **kw: object) -> CassandraNode:
        """A node with its own run dir and two free ports (for a test run or a benchmark)."""
        return cls(name=name, port=free_port(), storage_port=free_port(), **kw)  # type: ignore[arg-type]

    @property
    def run_dir(self) -> Path:
        return self.base / f"run-{self.name}"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "cassandra.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "cassandra.out"

    # -- jars ----------------------------------------------------------------------
    def jars_ready(self) -> bool:
        marker = self.lib / ".complete"
        return marker.exists() and marker.read_text().strip() == self.version

    def fetch_jars(self, quiet: bool = True) -> Path:
        """Resolve cassandra-all and its runtime classpath into ``lib`` (cached by version)."""
        if self.jars_ready():
            return self.lib
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / "fetch.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs: one resolves, others wait
            if self.jars_ready():
                return self.lib
            return self._fetch_jars(quiet)

    def _fetch_jars(self, quiet: bool) -> Path:
        mvn = shutil.which("mvn")
        if mvn is None:
            raise CassandraError("mvn is not on PATH: `apt-get install maven` (needs Maven 3.8+)")
        work = self.base / "maven"
        work.mkdir(parents=True, exist_ok=True)
        (work / "pom.xml").write_text(POM_TEMPLATE.format(version=self.version))
        staging = self.base / "lib.partial"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-B",
            *(["-q"] if quiet else []),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        env = dict(os.environ, JAVA_HOME=str(Path(find_java()).parents[1]))
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        jars = list(staging.glob("cassandra-all-*.jar")) if staging.exists() else []
        # An ERROR about the unresolved system-scoped ${jmc5.path} artifact is noise; the
        # jars are what matters, so judge by them and by the exit code together.
        if proc.returncode != 0 or not jars:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise CassandraError(
                f"resolving cassandra-all {self.version} with Maven failed "
                f"(exit {proc.returncode}):\n{tail}"
            )
        shutil.rmtree(self.lib, ignore_errors=True)
        staging.rename(self.lib)
        (self.lib / ".complete").write_text(self.version)
        return self.lib

    def _jamm(self) -> Path:
        found = sorted(self.lib.glob("jamm-*.jar"))
        if not found:
            raise CassandraError(f"no jamm-*.jar in {self.lib}: delete it and fetch again")
        return found[-1]

    # -- process -------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of the node this module started, if it is still alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def command(self) -> list[str]:
        yaml_path = self.run_dir / "cassandra.yaml"
        return [
            find_java(),
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            *JPMS_FLAGS,
            *os.environ.get("GREENROOM_CASSANDRA_JVM_OPTS", "").split(),
            f"-javaagent:{self._jamm()}",
            f"-Dcassandra.config=file://{yaml_path}",
            f"-Dcassandra.storagedir={self.data_dir}",
            f"-Dcassandra.logdir={self.run_dir / 'logs'}",
            f"-Dlogback.configurationFile={self.run_dir / 'logback.xml'}",
            "-Dcassandra-foreground=yes",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            *(["-Dcassandra.unsafesystem=true"] if self.unsafe_system else []),
            "-cp",
            f"{self.lib}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def _commitlog_yaml(self) -> str:
        if self.commitlog_sync == "batch":
            return "commitlog_sync: batch"
        if self.commitlog_sync == "periodic":
            return "commitlog_sync: periodic\ncommitlog_sync_period: 10000ms"
        if self.commitlog_sync.startswith("group"):
            return "commitlog_sync: group\ncommitlog_sync_group_window: 2ms"
        raise CassandraError(
            f"commitlog_sync must be batch, group or periodic, not {self.commitlog_sync!r}"
        )

    def _write_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(exist_ok=True)
        (self.run_dir / "cassandra.yaml").write_text(
            YAML_TEMPLATE.format(
                port=self.port, storage_port=self.storage_port, commitlog=self._commitlog_yaml()
            )
        )
        (self.run_dir / "logback.xml").write_text(LOGBACK)

    def spawn(self, keep_data: bool = False) -> int:
        """Start the daemon (without waiting); returns its pid. Jars must be fetched."""
        if self.pid() is not None:
            return self.pid()  # type: ignore[return-value]
        if not self.jars_ready():
            raise CassandraError(f"jars for Cassandra {self.version} are not in {self.lib}")
        for busy in (self.port, self.storage_port):
            if port_open(busy, self.host):
                raise CassandraError(
                    f"127.0.0.1:{busy} is already taken by a process this module did not "
                    f"start; stop it or set GREENROOM_CASSANDRA_PORT / _STORAGE_PORT"
                )
        if not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self._write_config()
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session: a Ctrl-C in pytest won't hit it
                cwd=self.run_dir,
            )
        finally:
            log.close()
        self._proc = proc
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def ready(self) -> bool:
        """Port open and ``SELECT release_version FROM system.local`` answers."""
        if not port_open(self.port, self.host):
            return False
        try:
            return self.release_version() is not None
        except Exception:
            return False

    def release_version(self) -> str | None:
        from cassandra.cluster import Cluster
        from cassandra.io.libevreactor import LibevConnection

        cluster = Cluster(
            [self.host],
            port=self.port,
            connection_class=LibevConnection,
            protocol_version=5,
            connect_timeout=5,
            control_connection_timeout=5,
        )
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version FROM system.local").one()
            return row.release_version if row else None
        finally:
            cluster.shutdown()

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Block until the node answers CQL; returns seconds waited. Raises if it died."""
        t0 = time.monotonic()
        while True:
            pid = self.pid()
            if pid is None:
                raise CassandraError(
                    f"Cassandra exited during start-up; last lines of {self.log_file}:\n"
                    + self.log_tail()
                )
            if port_open(self.port, self.host) and self.ready():
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise CassandraError(
                    f"Cassandra did not answer CQL on 127.0.0.1:{self.port} within "
                    f"{timeout:.0f}s; last lines of {self.log_file}:\n" + self.log_tail()
                )
            time.sleep(0.25)

    def start(self, timeout: float = 180.0, keep_data: bool = False) -> bool:
        """Fetch jars if needed, start and wait until ready. False if it was already running."""
        if self.pid() is not None and self.ready():
            return False
        self.fetch_jars()
        self.spawn(keep_data=keep_data)
        self.wait_ready(timeout)
        return True

    def stop(
        self, keep_data: bool = False, sig: int = signal.SIGTERM, timeout: float = 60.0
    ) -> bool:
        """Stop the node by the pid it was started with. False if none was running."""
        pid = self.pid()
        stopped = False
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.1)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                while _pid_alive(pid):
                    self._reap()
                    time.sleep(0.05)
            self._reap()
            stopped = True
        # The port is released shortly after the process is gone.
        deadline = time.monotonic() + 10
        while port_open(self.port, self.host) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        if not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            if self.name != "default":
                shutil.rmtree(self.run_dir, ignore_errors=True)
        return stopped

    def remove_stale_runs(self) -> None:
        """Clean up after runs that died without stopping their node.

        A ``run-pytest-<pid>`` node whose pytest process is gone is ended (it was started
        by that run and nobody else uses it); dirs of nodes no longer running are removed.
        """
        for run in self.base.glob("run-*"):
            if run == self.run_dir or run.name == "run-default":
                continue
            try:
                pid: int | None = int((run / "cassandra.pid").read_text().strip())
            except (OSError, ValueError):
                pid = None
            owner = run.name.removeprefix("run-pytest-")
            orphan = owner.isdigit() and not _pid_alive(int(owner))
            if pid is not None and _pid_alive(pid) and orphan and _is_cassandra(pid, run):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
            if pid is None or not _pid_alive(pid):
                shutil.rmtree(run, ignore_errors=True)

    def _reap(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None:
            proc.poll()

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return "stopped"
        return f"running pid={pid} port={self.port} ready={self.ready()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.services.cassandra")
    parser.add_argument("action", choices=["start", "stop", "status", "fetch"])
    parser.add_argument("--keep-data", action="store_true", help="keep/reuse the data dir")
    args = parser.parse_args(argv)
    node = CassandraNode()
    try:
        if args.action == "fetch":
            t0 = time.monotonic()
            lib = node.fetch_jars(quiet=False)
            print(f"jars in {lib} ({time.monotonic() - t0:.1f}s)")
        elif args.action == "start":
            t0 = time.monotonic()
            started = node.start(keep_data=args.keep_data)
            verb = "started" if started else "already running"
            print(f"cassandra {verb}: {node.status()} ({time.monotonic() - t0:.1f}s)")
        elif args.action == "stop":
            print("stopped" if node.stop(keep_data=args.keep_data) else "was not running")
        else:
            print(node.status())
    except CassandraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        skip_driver_exit_wait()
    return 0


def skip_driver_exit_wait() -> None:
    """Skip the driver's 5 s exit stall once every Cluster is shut down.

    scylla-driver's libev reactor registers an atexit hook that joins its event-loop
    thread with a 5 s timeout, and with no connections left that join always times out
    (seen with 3.29). The thread is a daemon, so not joining it loses nothing.
    """
    import atexit

    reactor = sys.modules.get("cassandra.io.libevreactor")
    if reactor is not None:
        atexit.unregister(reactor._atexit_cleanup)


if __name__ == "__main__":
    sys.exit(main())
