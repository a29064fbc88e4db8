"""A node stops its services' supervision tree, and hears that it did."""

from __future__ import annotations

import logging

import pytest

from cluster.messages import NodeConfig
from cluster.node import NodeStartError, NodeThread
from tests.cluster.conftest import SECRET, SERVICES


def test_a_node_with_services_gets_stopped_from_its_root_supervisor(caplog):
    # Node.stop asks its root supervisor to Stop; without a Stopped back it waits out
    # its 10 s and warns. (The Echo service once echoed the ActorExitRequest of its
    # supervisor, which ended the supervisor before it could answer.)
    thread = NodeThread(NodeConfig("stopper", SECRET, services=SERVICES))
    thread.start()
    with caplog.at_level(logging.WARNING, logger="greenroom.node"):
        thread.stop(timeout=60)
    assert "did not stop" not in caplog.text


def test_a_node_whose_service_cannot_be_imported_fails_to_start_with_that_reason():
    # OTP: a child that fails to start fails its supervisor's start with {error, Reason}.
    # The import error once escaped Supervisor._start, the base retried Start behind the
    # supervisor's own pending work and the node waited out its 10 s ask instead.
    services = (SERVICES[0], ("broken", "tests.cluster.hop.NoSuchService"))
    thread = NodeThread(NodeConfig("broken-start", SECRET, services=services))
    with pytest.raises(NodeStartError, match="broken.*NoSuchService"):
        thread.start(timeout=60)
