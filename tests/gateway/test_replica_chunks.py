"""``ReplicaFeed`` cuts a turn's replication into envelopes of about ``CHUNK_BYTES``:
a node re-opening hundreds of sessions with their logs on a new standby once made one
envelope over the data plane's frame limit."""

from __future__ import annotations

from gateway.messages import ReplicaClose, ReplicaOpen, SessionState
from gateway.replica import CHUNK_BYTES, _chunks


def opened(n: int, log_bytes: int) -> ReplicaOpen:
    entries = [["MESSAGE_CREATE", b"x" * 1000] for _ in range(log_bytes // 1000)]
    state = SessionState(f"n1.{n}", b"k", n, 0, [1], None, "online", [], 50, "json",
                         len(entries), entries)
    return ReplicaOpen(state, None, True)


def test_ops_keep_their_order_in_chunks_of_bounded_size():
    ops = [opened(n, 100_000) for n in range(50)] + [ReplicaClose("n1.0", None)]
    chunks = list(_chunks(ops))
    assert len(chunks) > 1
    assert [op for chunk in chunks for op in chunk] == ops
    for chunk in chunks:
        weight = sum(sum(len(e[1]) for e in op.state.entries) for op in chunk
                     if isinstance(op, ReplicaOpen))
        assert weight <= CHUNK_BYTES


def test_one_op_heavier_than_a_chunk_goes_alone_and_small_turns_stay_one_envelope():
    heavy = opened(1, 2 * CHUNK_BYTES)
    assert list(_chunks([heavy])) == [[heavy]]
    small = [["MESSAGE_CREATE", b"{}", "json", ["n1.1", 3]], ReplicaClose("n1.1", None)]
    assert list(_chunks(small)) == [small]
    assert list(_chunks([])) == []
