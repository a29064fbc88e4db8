"""The unrolled SQLite create path must bind exactly what the generic one binds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from storage.model import Message, MessageCreate
from storage.snowflake import snowflake_at
from storage.sqlite import _create_params, _upsert_params

ids = st.integers(0, 4095).map(lambda n: snowflake_at(1_700_000_000_000, 1, 2, n))
messages = st.builds(
    Message,
    channel_id=st.just(snowflake_at(1_600_000_000_000)),
    id=ids,
    author_id=st.integers(0, 2**62),
    content=st.text(max_size=20),
    guild_id=st.none() | st.integers(0, 2**62),
    type=st.integers(0, 30),
    flags=st.integers(0, 1 << 20),
    tts=st.booleans(),
    mention_everyone=st.booleans(),
    mentions=st.lists(st.integers(0, 2**62), max_size=3),
    mention_roles=st.lists(st.integers(0, 2**62), max_size=3),
    embeds=st.lists(st.fixed_dictionaries({"title": st.text(max_size=5)}), max_size=2),
    attachments=st.lists(st.fixed_dictionaries({"id": st.text(max_size=5)}), max_size=2),
    nonce=st.none() | st.text(max_size=5),
    pinned=st.booleans(),
    edited_at_ms=st.none() | st.integers(0, 2**41),
)


@given(messages)
def test_create_params_match_the_generic_builder(message: Message) -> None:
    write = MessageCreate(message)
    assert _create_params(write) == _upsert_params(write)
