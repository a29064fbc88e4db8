"""Failover with real node processes: a request whose answer had to come from a node
that dies fails at once (503 + ``Retry-After``, not after the 15 s ask timeout), and
the retried request is served by the cluster that healed."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

from cluster.placement import Placement
from tests.cluster.test_scale_out import NODES, rest, rest_request, running

#: far above the REST layer's 15 s ask timeout: a 503 that came from that timeout
#: would say "upstream timed out"; one from the node's death says the node is gone
CLIENT_TIMEOUT_S = 60.0


def post_raw(served: dict, channel: int, content: str) -> tuple[int, dict, dict] | Exception:
    """One POST on a new connection: (status, headers, JSON body), or the error when the
    connection itself failed (it landed on the node that was killed)."""
    request = rest_request(served, "POST", f"/channels/{channel}/messages",
                           {"content": content})
    try:
        with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT_S) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())
    except (urllib.error.URLError, OSError) as err:
        return err


def test_posts_in_flight_to_a_node_that_dies_fail_at_once_and_a_retry_is_served(tmp_path):
    with running(tmp_path) as (served, nodes):
        channel = served["channel_id"]
        owner = Placement(NODES).owner(int(served["guild_id"]))
        survivor = next(n for n in NODES if n != owner)
        rest(served, "POST", f"/channels/{channel}/messages", {"content": "warm-up"})
        # The owner stops answering (but is still a member): posts that reach the
        # survivor are forwarded to it and wait; then it dies with them in flight.
        os.kill(nodes[owner]["pid"], signal.SIGSTOP)
        results: list = [None] * 12
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, post_raw(served, channel, f"in flight {i}"))) for i in range(len(results))]
        for t in threads:
            t.start()
        time.sleep(1.0)  # let them reach the nodes (not an assertion)
        os.kill(nodes[owner]["pid"], signal.SIGKILL)
        for t in threads:
            t.join(CLIENT_TIMEOUT_S + 5)
        answered = [r for r in results if isinstance(r, tuple)]
        assert answered, f"every post landed on the killed node: {results}"
        failed = 0
        for status, headers, body in answered:
            assert headers["X-Greenroom-Node"] == survivor
            if status == 200:
                # came after the survivor suspected the stopped owner (1 s of silence)
                # or after the owner's restart (a loaded host may start a thread that
                # late): served by whichever node had the channel then, as it should be
                assert body["content"].startswith("in flight"), body
                continue
            # failed by the node's death, not by the ask timeout, and retryable
            assert status == 503, (status, body)
            assert headers["Retry-After"] == "1"
            assert "is gone" in body["message"] and body["code"] == 0, body
            failed += 1
        assert failed, f"no post was in flight to the owner when it died: {answered}"
        # the client's retry is served (the owner restarts; the cluster heals)
        for _ in range(100):
            retried = post_raw(served, channel, "retried")
            if isinstance(retried, tuple) and retried[0] == 200:
                assert retried[2]["content"] == "retried"
                return
            time.sleep(0.1)
        raise AssertionError(f"the retried post was never served: {retried}")
