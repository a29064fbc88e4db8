"""Where a message's time goes between its POST and its sockets: one histogram,
``gateway_message_stage`` (Prometheus: ``gateway_message_stage_seconds``), by stage.

- ``rest_to_channel``: the REST handler took the post -> its channel actor creates the
  message (validation, the registry's routing, the channel's mailbox; wall clocks, as
  the two may be on different nodes of a host or cluster);
- ``durable``: created -> the storage actor says durable (its queue, the batch, the
  database);
- ``channel_to_guild``: durable -> the guild actor takes the fan-out (its mailbox; wall
  clocks too: while a guild moves, the two may be on different nodes);
- ``guild_fanout``: the guild's work for one fan-out (recipients, one ``NodeFanout``
  per node);
- ``fanout_loop``: a node's fan-out point, from taking a ``NodeFanout`` to the last of
  its sessions' socket writes (once per node and message).

``gateway_delivery_latency`` (gateway/fanout.py) is the whole way, creation to socket,
per delivery. ``loadtest/gateway_load.py`` reads these from the operator port's
``/metrics`` around each rate, so the benchmark names the stage that owns the tail.
Recording costs one bisect and three adds per stage and message (not per recipient).
"""

from __future__ import annotations

from observability.metrics import histogram

#: finer than the default latency buckets at the low end: the stages of one message at
#: 10 msg/s take 0.1-5 ms (0.75 and 1.5 ms: rest_to_channel and durable sit at 0.5-1 ms
#: on an idle node, where a p50 interpolated across 0.5-1 ms read 0.66 for a mean of 0.57)
STAGE_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005,
                   0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.0)
STAGES = ("rest_to_channel", "durable", "channel_to_guild", "guild_fanout", "fanout_loop")

_stage = histogram("gateway_message_stage",
                   "one stage of a message's way from its POST to its sockets (label "
                   "stage; gateway/stages.py)", "s", STAGE_BUCKETS_S, labels={"stage": STAGES})


def record_stage(stage: str, seconds: float) -> None:
    """Count one message's time in ``stage`` (one of ``STAGES``)."""
    _stage.record(seconds, stage=stage)
