"""One host of a multi-host test, run inside its network namespace:

    python -m tests.cluster.netns_host --host IP --name NAME [--join LEADER:PORT]

starts a ``Cluster`` of one node (with the ``hop`` and ``echo`` services) and a client
node, prints ``{"ready": ...}`` as one JSON line, then answers JSON commands read from
stdin, one per line, with one JSON line each:

    {"op": "view"}                 what this host's node knows and sees live
    {"op": "relay", "path": [..]}  a Relay through the ``hop`` of each named node
    {"op": "members"}              this host's membership actor's member set

and stops the cluster when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from actors.address import Address
from cluster.client import ClusterClient
from cluster.launcher import Cluster
from cluster.messages import DIRECTORY_ID, GetView
from tests.cluster.conftest import SECRET, SERVICES
from tests.cluster.hop import Relay


def _answer(cluster: Cluster, client: ClusterClient, node: str, command: dict) -> dict:
    op = command.get("op")
    client.join(cluster.members())  # a restarted node listens on a new address
    if op == "view":
        view = client.ask(Address(node, DIRECTORY_ID), GetView())
        return {"node": view.node, "known": view.known, "live": view.live,
                "pids": view.pids, "events": view.events}
    if op == "members":
        members = cluster.members()
        return {"nodes": sorted(members.nodes), "clients": sorted(members.clients)}
    if op == "relay":
        hops = [client.where_is(n, "hop") for n in command["path"]]
        reply = client.ask(hops[0], Relay(hops[1:], []), command.get("timeout", 5.0))
        return {"hops": reply.hops}
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--join")
    args = parser.parse_args()
    cluster = Cluster(1, SECRET, host=args.host, services=SERVICES, name=args.name,
                      join=args.join)
    try:
        cluster.start()
        client = ClusterClient(cluster, SECRET, name=f"{args.name}-client")
        client.start()
        node = cluster.node_names[0]
        print(json.dumps({"ready": True, "node": node, "admin": f"{args.host}:"
                          f"{cluster.admin_port}"}), flush=True)
        for line in sys.stdin:
            try:
                out = _answer(cluster, client, node, json.loads(line))
            except Exception as err:
                out = {"error": f"{type(err).__name__}: {err}",
                       "traceback": traceback.format_exc()}
            print(json.dumps(out), flush=True)
        client.stop()
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
