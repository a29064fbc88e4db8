"""Nothing a process sends to the node tree's listeners is unpickled unless it carries
the cluster secret's MAC (finding 1 of issue 10: a pickle sent to Thespian's TCP
listeners ran in the server)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cluster.launcher import Cluster
from cluster.messages import GetMembers, NodeConfig
from cluster.node import NodeActor
from cluster.thespian_tcp import WINDOW, Refused, SignedPickle, restricted_loads
from supervision import ONE_FOR_ONE, ChildSpec, SupervisorFlags, SupervisorSpec
from tests.cluster.run_log import ROOT, Run, kill_tree, run_env, start_run, tagged
from tests.cluster.test_nodes import listening_tcp


class _Open:
    """Unpickled, this calls ``open(path, "w")``: the file appears iff the pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def thespian_frame(obj: object) -> bytes:
    """Thespian's TCP framing (``streamBuffer.toSendBuffer``): ``b"<len>>" + pickle``."""
    payload = pickle.dumps(obj)
    return b"%d>" % len(payload) + payload


def attack(address: str, port: int, marker: Path) -> bytes:
    """Send the pickle that creates ``marker``; return what the listener answered
    before it closed (or before 3 s passed)."""
    return send(address, port, thespian_frame(_Open(str(marker))))


def send(address: str, port: int, data: bytes) -> bytes:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    answer = b""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect((address, port))
        s.sendall(data)
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


def start_tree(tmp_path: Path, nodes: int, tag: str) -> Run:
    env = run_env(tmp_path, tag)
    env.pop("GREENROOM_CLUSTER_SECRET", None)  # the per-run random secret
    return start_run(env, "--nodes", str(nodes), "--port", "0", "--rest-port", "0",
                     until="greenroom is running")


def stop(run: Run) -> int | None:
    try:
        return run.stop()
    finally:
        if run.tag:
            kill_tree(run.tag)


@pytest.mark.parametrize("nodes", [1, 2])
def test_a_pickle_sent_to_any_listener_of_the_tree_runs_nowhere(tmp_path, nodes):
    tag = f"auth-{os.getpid()}-{time.monotonic_ns()}"
    run = start_tree(tmp_path, nodes, tag)
    served, events, proc = run.served, run.events, run.proc
    try:
        sockets = listening_tcp(tagged(tag))
        data_planes = {int(e["data_plane"].rsplit(":", 1)[1])
                       for e in events if e.get("event") == "node serving"}
        web = {urlsplit(served[k]).port for k in ("gateway_url", "rest_url")}
        # each node's operator port (HTTP: /metrics, /healthz, /readyz)
        web |= {urlsplit(e["operator"]).port for e in events
                if e.get("event") == "node serving" and e.get("operator")}
        # The starter's own ActorSystem socket (inherited by every fork, so listed under
        # any pid) is read only while it asks something: when it stops the tree.
        starter = {port for _a, port, _p in listening_tcp({proc.pid})}
        thespian = [s for s in sockets if s[1] not in data_planes | web]
        # admin, logger, supervisor, membership, the starter and a node actor per node
        assert len(thespian) == 5 + nodes, sockets
        assert len(data_planes) == nodes
        with ThreadPoolExecutor(len(sockets)) as pool:  # all at once: ~3 s, not 3 s each
            answers = pool.map(lambda s: (s[1], attack(s[0], s[1], tmp_path / f"ran-{s[1]}")),
                               sockets)
            # a frame announced at 1 GB is refused at once, not buffered for minutes
            huge = pool.map(lambda s: (s[1], send(s[0], s[1], b"999999999>" + b"x" * 99)),
                            [s for s in thespian if s[1] not in starter])
        for port, answer in [*answers, *huge]:
            if port not in data_planes | web | starter:
                # Thespian read the whole frame, and refused it
                assert b"ACK+DATAERR" in answer, (port, answer)
        # the tree still serves
        with urllib.request.urlopen(f"{served['rest_url']}/gateway", timeout=10) as r:
            assert json.loads(r.read())["url"].startswith("ws://")
    finally:
        assert stop(run) == 0  # through every Thespian process, the starter's too
    ran = sorted(int(m.name[4:]) for m in tmp_path.glob("ran-*"))
    assert not ran, f"the pickle ran behind {len(ran)} of {len(sockets)} listeners: {ran}"


def test_join_without_a_cluster_secret_is_refused_clearly():
    tag = f"join-{os.getpid()}-{time.monotonic_ns()}"
    env = {k: v for k, v in os.environ.items() if k != "GREENROOM_CLUSTER_SECRET"}
    env["GREENROOM_TEST_TAG"] = tag
    try:
        result = subprocess.run([sys.executable, "-m", "greenroom.cli", "run", "--join",
                                 "127.0.0.1:1900"], capture_output=True, text=True,
                                env=env, cwd=ROOT, timeout=20)
    finally:
        for p in tagged(tag):  # before: a tree that started, joining nobody
            os.kill(p, signal.SIGKILL)
    assert result.returncode == 2
    assert "--join needs GREENROOM_CLUSTER_SECRET" in result.stderr, result.stderr


# -- the pieces, alone --------------------------------------------------------------


def signed(secret: bytes, obj: object) -> bytes:
    return SignedPickle(secret).dumps(obj)


def test_the_restricted_unpickler_refuses_what_is_not_allowlisted(tmp_path):
    marker = tmp_path / "ran"
    for hostile in (_Open(str(marker)), os.system, subprocess.Popen, Cluster):
        with pytest.raises(Refused, match="not allowlisted"):
            restricted_loads(pickle.dumps(hostile))
    assert not marker.exists()
    # what the tree sends passes: messages, supervisor specs, actor classes, addresses
    spec = SupervisorSpec(SupervisorFlags(ONE_FOR_ONE, 5, 10.0),
                          (ChildSpec("n1", NodeActor, init=NodeConfig("n1", b"s")),))
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    for value in (spec, GetMembers(), {1: {2, 3}}, ValueError("no"), record):
        assert type(restricted_loads(pickle.dumps(value))) is type(value)


def test_a_frame_without_the_secrets_mac_is_refused_before_unpickling():
    receiver = SignedPickle(b"the cluster's")
    frame = signed(b"the cluster's", GetMembers())
    assert receiver.open(frame) == GetMembers()
    # a MAC made with another secret, over bytes that are not even a pickle: refused
    # for its MAC (an unpickler would have failed differently)
    forged = signed(b"a guess", GetMembers())
    with pytest.raises(Refused, match="MAC"):
        receiver.open(forged[:-8] + b"\xff" * 8)
    with pytest.raises(Refused, match="MAC"):
        receiver.open(bytes([frame[0] ^ 1]) + frame[1:])
    with pytest.raises(Refused, match="MAC"):
        receiver.open(pickle.dumps(GetMembers()) + b"\0" * 64)
    # Thespian's acknowledgements are bytes compared, not unpickled
    assert receiver.open(pickle.dumps("ACK")) == "ACK"
    # what Thespian calls gets a frame that fails when Thespian unpacks it
    with pytest.raises(Refused, match="MAC"):
        _sender, _message = receiver.loads(forged)


def test_a_replayed_or_stale_frame_is_refused(monkeypatch):
    sender, receiver = SignedPickle(b"k"), SignedPickle(b"k")
    first, second = sender.dumps(GetMembers()), sender.dumps(GetMembers())
    assert receiver.open(second) == receiver.open(first) == GetMembers()  # any order
    assert receiver.open(first) == GetMembers()  # Thespian decodes one buffer twice
    with pytest.raises(Refused, match="already received"):
        receiver.open(bytes(bytearray(first)))  # a copy of it, from a peer
    real = time.time()
    monkeypatch.setattr(time, "time", lambda: real - 2 * WINDOW)  # a frame made long ago
    stale = sender.dumps(GetMembers())
    monkeypatch.undo()
    with pytest.raises(Refused, match="old"):
        receiver.open(stale)
