"""What a test service run as an OS process shares (Cassandra, Jaeger): its run dir,
pid file and log under ``<base>/run-<name>``, spawning it in a session of its own,
waiting until it answers, stopping it by the pid it was started with, ending what
interrupted test runs left behind, a background start per test run, and the command
line ``fetch|start|stop|status``.

A service is a ``ProcessService`` (a mixin for a dataclass with ``base``, ``name`` and
``host``) that says how to get its binary (``fetch``), the command that runs it
(``command``), when it answers (``ready``) and which processes are its own
(``is_ours``).
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
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

from cluster.launcher import free_port  # noqa: F401 - re-exported for the services
from loadtest.process_tree import alive as pid_alive


class ServiceError(RuntimeError):
    """A test service could not be fetched, started or reached; the message says why."""


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def fetch_once(lock: Path, ready: Callable[[], bool], fetch: Callable[[], Path],
               fetched: Path) -> Path:
    """``fetched`` if ``ready()``, else ``fetch()`` under an exclusive lock file: of
    concurrent runs one fetches (or builds), the others wait and then find it ready."""
    if ready():
        return fetched
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if ready():
            return fetched
        return fetch()


def find_executable(variable: str, candidates: Iterable[str | Path],
                    error: type[ServiceError]) -> str | None:
    """The executable ``$variable`` names (raises if it is not one), else the first
    executable of ``candidates``, else None."""
    explicit = os.environ.get(variable)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise error(f"{variable}={explicit!r} is not an executable")
        return explicit
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


class ProcessService:
    """A service process managed through files under ``base / f"run-{name}"``.

    Subclasses (dataclasses) set the class attributes and fields named below and
    implement the methods that raise NotImplementedError."""

    #: the service's name in messages ("Cassandra"); lower-cased, on the command line
    label: ClassVar[str]
    #: what its failures raise
    error: ClassVar[type[ServiceError]] = ServiceError
    #: file names in the run dir
    pid_name: ClassVar[str]
    log_name: ClassVar[str]
    #: how often ``wait_ready`` asks ``ready``, and for how long by default
    poll_s: ClassVar[float] = 0.1
    start_timeout_s: ClassVar[float] = 60.0
    #: the command line's ``fetch`` line: where the binary is, as ``{path}``
    fetched: ClassVar[str] = "{path}"

    base: Path
    name: str
    host: str

    # -- what a service says --------------------------------------------------------
    def fetch(self, quiet: bool = True) -> Path:
        """Get the binary (cached); where it is."""
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def spawn(self) -> int:
        """Start the process (without waiting); its pid. The binary must be fetched."""
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def not_answering(self) -> str:
        """What did not answer when ``wait_ready`` gives up ("X did not answer on Y")."""
        raise NotImplementedError

    def stop(self) -> bool:
        """Stop it by the pid it was started with. False if none was running."""
        raise NotImplementedError

    def status(self) -> str:
        raise NotImplementedError

    @classmethod
    def isolated(cls, name: str) -> Self:
        """One with its own run dir and free ports (for a test run or a benchmark)."""
        raise NotImplementedError

    def is_ours(self, pid: int, run_dir: Path) -> bool:
        """The pid runs this service for ``run_dir`` (not a recycled pid)."""
        raise NotImplementedError

    # -- paths ---------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.base / f"run-{self.name}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / self.pid_name

    @property
    def log_file(self) -> Path:
        return self.run_dir / self.log_name

    # -- process -------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of the process this module started, if it is still alive."""
        return _read_pid(self.pid_file)

    def check_ports_free(self, ports: Iterable[int], hint: str = "") -> None:
        """Raise if a port is taken (by a process this module did not start)."""
        for port in ports:
            if port_open(port, self.host):
                raise self.error(
                    f"{self.host}:{port} is already taken by a process this module did not "
                    f"start{hint}"
                )

    def popen(self, env: dict[str, str] | None = None) -> int:
        """Start ``command()`` in its own session (a Ctrl-C in pytest won't hit it), its
        output appended to the log, its pid in the pid file; returns the pid."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.run_dir, env=env,
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

    def start(self, timeout: float | None = None, **spawn: Any) -> bool:
        """Fetch if needed, start and wait until ready. False if it was already running."""
        if self.pid() is not None and self.ready():
            return False
        self.fetch()
        self.spawn(**spawn)
        self.wait_ready(timeout)
        return True

    def wait_ready(self, timeout: float | None = None) -> float:
        """Block until ``ready``; returns seconds waited. Raises if the process died or
        did not answer within ``timeout`` (default ``start_timeout_s``)."""
        if timeout is None:
            timeout = self.start_timeout_s
        t0 = time.monotonic()
        while True:
            if self.pid() is None:
                raise self.error(
                    f"{self.label} exited during start-up; last lines of {self.log_file}:\n"
                    + self.log_tail()
                )
            if self.ready():
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise self.error(
                    f"{self.not_answering()} within {timeout:.0f}s; last lines of "
                    f"{self.log_file}:\n" + self.log_tail()
                )
            time.sleep(self.poll_s)

    def end(self, sig: int, timeout: float, poll_s: float) -> bool:
        """Signal our process, SIGKILL it after ``timeout``, reap it, drop the pid file.
        False if none was running."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while pid_alive(pid) and time.monotonic() < deadline:
                self._reap()
                time.sleep(poll_s)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                while pid_alive(pid):
                    self._reap()
                    time.sleep(0.05)
            self._reap()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        return pid is not None

    def remove_run_dir(self) -> None:
        """The run dir, unless it is the command line's ("default": kept for its log)."""
        if self.name != "default":
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def remove_stale_runs(self) -> None:
        """Clean up after runs that died without stopping their process.

        A ``run-pytest-<pid>`` process whose pytest is gone is ended (it was started by
        that run and nobody else uses it); dirs of processes no longer running are removed.
        """
        for run in self.base.glob("run-*"):
            if run == self.run_dir or run.name == "run-default":
                continue
            pid = _read_pid(run / self.pid_name, alive=False)
            owner = run.name.removeprefix("run-pytest-")
            orphan = owner.isdigit() and not pid_alive(int(owner))
            if pid is not None and pid_alive(pid) and orphan and self.is_ours(pid, run):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
            if pid is None or not pid_alive(pid):
                shutil.rmtree(run, ignore_errors=True)

    def _reap(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None:
            proc.poll()


def _read_pid(path: Path, alive: bool = True) -> int | None:
    """The pid in ``path``; None if there is none (or, with ``alive``, it has ended)."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if not alive or pid_alive(pid) else None


S = TypeVar("S", bound=ProcessService)


class Boot(Generic[S]):
    """One service per test run, started in a background thread as soon as collection
    shows a test needs it (a first fetch or boot takes long: it overlaps the other
    tests); ``wait`` returns the running service or raises why it could not start."""

    def __init__(self, kind: type[S], name: str, **start: Any) -> None:
        self.kind, self.name = kind, name  # started as kind.isolated(name)
        self._start = start  # keyword arguments of its start()
        self.service: S | None = None
        self.started_here = False
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def kick(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"{self.kind.label.lower()}-boot", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            service = self.kind.isolated(self.name)
            service.remove_stale_runs()
            self.service = service
            self.started_here = service.start(**self._start)
        except BaseException as exc:  # reported to each test that needs the service
            self.error = exc

    def wait(self) -> S:
        self.kick()
        assert self._thread is not None
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.service is not None
        return self.service

    def stop(self) -> None:
        if self.started_here and self.service is not None:
            self.service.stop()
            self.started_here = False

    def fixture(self, what: str) -> S:
        """``wait``, for a fixture: if the service cannot start, the tests that need
        it fail with the reason ("the <what> could not start: ..."), never skip."""
        import pytest

        try:
            return self.wait()
        except ServiceError as exc:
            reason = str(exc)
        except Exception as exc:
            reason = repr(exc)
        pytest.fail(f"the {what} could not start: {reason}", pytrace=False)


def main(service: ProcessService, argv: list[str] | None,
         add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """``python -m tests.services.<label> fetch|start|stop|status``: one service on its
    default ports. Options ``add_arguments`` declares are passed to start and stop."""
    tool = service.label.lower()
    parser = argparse.ArgumentParser(prog=f"python -m tests.services.{tool}")
    parser.add_argument("action", choices=["fetch", "start", "stop", "status"])
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k != "action"}
    try:
        if args.action == "fetch":
            t0 = time.monotonic()
            path = service.fetch(quiet=False)
            print(f"{service.fetched.format(path=path)} ({time.monotonic() - t0:.1f}s)")
        elif args.action == "start":
            t0 = time.monotonic()
            verb = "started" if service.start(**options) else "already running"
            print(f"{tool} {verb}: {service.status()} ({time.monotonic() - t0:.1f}s)")
        elif args.action == "stop":
            print("stopped" if service.stop(**options) else "was not running")
        else:
            print(service.status())
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
