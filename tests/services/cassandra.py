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
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.services import process
from tests.services.process import ProcessService, ServiceError, free_port, port_open

__all__ = ["CassandraError", "CassandraNode", "find_java", "free_port", "port_open",
           "skip_driver_exit_wait"]

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


class CassandraError(ServiceError):
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
    found = process.find_executable(
        "GREENROOM_JAVA",
        itertools.chain(JAVA17_CANDIDATES, sorted(Path("/usr/lib/jvm").glob("*17*/bin/java"))),
        CassandraError,
    )
    if found:
        return found
    raise CassandraError(
        "no Java 17 found under /usr/lib/jvm (Cassandra 5.0 needs Java 11 or 17); "
        "install openjdk-17-jre-headless or set GREENROOM_JAVA"
    )


@dataclass
class CassandraNode(ProcessService):
    """One single-node Cassandra cluster on 127.0.0.1, managed through files under ``base``."""

    label = "Cassandra"
    error = CassandraError
    pid_name = "cassandra.pid"
    log_name = "cassandra.out"
    poll_s = 0.25
    start_timeout_s = 180.0
    fetched = "jars in {path}"

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
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    # -- jars ----------------------------------------------------------------------
    def jars_ready(self) -> bool:
        marker = self.lib / ".complete"
        return marker.exists() and marker.read_text().strip() == self.version

    def fetch(self, quiet: bool = True) -> Path:
        return self.fetch_jars(quiet)

    def fetch_jars(self, quiet: bool = True) -> Path:
        """Resolve cassandra-all and its runtime classpath into ``lib`` (cached by version)."""
        return process.fetch_once(self.base / "fetch.lock", self.jars_ready,
                          lambda: self._fetch_jars(quiet), self.lib)

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
        self.check_ports_free((self.port, self.storage_port),
                              "; stop it or set GREENROOM_CASSANDRA_PORT / _STORAGE_PORT")
        if not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self._write_config()
        return self.popen()

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

    def not_answering(self) -> str:
        return f"Cassandra did not answer CQL on 127.0.0.1:{self.port}"

    def start(self, timeout: float | None = None, keep_data: bool = False) -> bool:
        """Fetch jars if needed, start and wait until ready. False if it was already running."""
        return super().start(timeout, keep_data=keep_data)

    def stop(
        self, keep_data: bool = False, sig: int = signal.SIGTERM, timeout: float = 60.0
    ) -> bool:
        """Stop the node by the pid it was started with. False if none was running."""
        stopped = self.end(sig, timeout, poll_s=0.1)
        # The port is released shortly after the process is gone.
        deadline = time.monotonic() + 10
        while port_open(self.port, self.host) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.remove_run_dir()
        return stopped

    def is_ours(self, pid: int, run_dir: Path) -> bool:
        """The pid is a CassandraDaemon using ``run_dir`` (not a recycled pid)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return "CassandraDaemon" in cmdline and str(run_dir) in cmdline

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return "stopped"
        return f"running pid={pid} port={self.port} ready={self.ready()}"


def main(argv: list[str] | None = None) -> int:
    def keep_data(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--keep-data", action="store_true", help="keep/reuse the data dir")

    try:
        return process.main(CassandraNode(), argv, keep_data)
    finally:
        skip_driver_exit_wait()


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
