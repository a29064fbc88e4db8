"""What an IDENTIFY loads from storage, and the per-process caches that keep it cheap.

Discord's GUILD_CREATE for a guild over the session's ``large_threshold`` carries
``large: true``, ``member_count`` and only the caller's own member (clients ask for the
rest with op 8, REQUEST_GUILD_MEMBERS); without GUILD_PRESENCES even a small guild shows
only the caller. So an IDENTIFY reads one member row per guild and a member count, and
reads the whole member list only for a small guild with GUILD_PRESENCES (at most
``large_threshold`` <= 250 rows).

What every member's GUILD_CREATE shares (the guild, its channels and roles as JSON
objects, the member count) is cached per guild for ``GUILD_TTL_S`` and forgotten when
this process changes it (``forget_guild``: REST channel and member changes); the TTL
bounds how stale a change made elsewhere (another node, the admin CLI) can look.

The token check is not cached: tokens are stored as SHA-256 digests (no slow KDF), and
the token, the user and the user's members come back in one storage call
(``Storage.account_for_token``; SQLite reads it on the event loop, with no hop to its
thread), so a cache would save little. A session keeps only a keyed BLAKE2b digest of its token (a secret per
process) to check a RESUME's token, not the token itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from chat.objects import guild_object, iso, member_object, user_object
from chat.overwrites import guild_overwrites
from gateway.protocol import GuildMembersRequested
from gateway.protocol.ready import SharedGuild
from gateway.ttl_map import TtlMap
from storage.applications import effective_flags
from storage.base import Storage
from storage.model import Member, User

GUILD_TTL_S = 10.0
#: Cached guild shells at most; the oldest goes first.
MAX_GUILDS = 4096


@dataclass(slots=True)
class GuildShell:
    """The part of a guild's GUILD_CREATE that is the same for every member."""

    fields: dict[str, Any]  # guild_object() without members / joined_at
    member_count: int
    expires: float
    #: its members' GUILD_CREATE JSON templates (``SharedGuild.shared``)
    encoded: dict[Any, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Identity:
    """What a valid IDENTIFY loaded: the user object and a guild dict per guild
    (``gateway.protocol.build_guild_create`` input), and the caller's members."""

    user: dict[str, Any]
    guilds: list[dict[str, Any]]
    members: dict[int, Member]  # guild id -> the caller's member (for Subscribe)
    #: the bot's application flags (``storage.applications``); 0 for a user
    application_flags: int = 0


class IdentityCache:
    """IDENTIFY's reads and the guild shells, shared by a process's sessions."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.monotonic) -> None:
        self.storage = storage
        self.clock = clock
        self._secret = secrets.token_bytes(32)
        self._guilds: dict[int, GuildShell] = {}
        self._loading: dict[int, asyncio.Future[GuildShell | None]] = {}
        #: application id -> its effective flags: cached like the guild shells, so a
        #: bot's IDENTIFY stays one storage call (flags change only by an operator)
        self._app_flags: TtlMap[int, int] = TtlMap(GUILD_TTL_S, MAX_GUILDS, clock)

    def token_key(self, token: str) -> bytes:
        """The keyed digest of ``token`` (compare with ``hmac.compare_digest``)."""
        return hashlib.blake2b(token.encode(), key=self._secret, digest_size=16).digest()

    def same_token(self, key: bytes, token: str) -> bool:
        return hmac.compare_digest(key, self.token_key(token))

    async def guild_shell(self, guild_id: int) -> GuildShell | None:
        """The shared part of ``guild_id``'s GUILD_CREATE; None if the guild is gone.
        Concurrent IDENTIFYs of one guild share one load (no stampede on a miss)."""
        shell = self._guilds.get(guild_id)
        if shell is not None and shell.expires > self.clock():
            return shell
        loading = self._loading.get(guild_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load_shell(guild_id))
            self._loading[guild_id] = loading
            loading.add_done_callback(lambda done: self._loaded(guild_id, done))
        return await asyncio.shield(loading)

    async def _load_shell(self, guild_id: int) -> GuildShell | None:
        storage = self.storage
        guild = await storage.get_guild(guild_id)
        if guild is None:
            self._guilds.pop(guild_id, None)
            return None
        channels, roles, count, overwrites = await asyncio.gather(
            storage.channels_for_guild(guild_id), storage.roles_for_guild(guild_id),
            storage.member_count(guild_id), guild_overwrites(storage, guild_id))
        fields = guild_object(guild, channels, roles, (), overwrites=overwrites)
        del fields["members"], fields["joined_at"], fields["member_count"]
        shell = GuildShell(fields, count, self.clock() + GUILD_TTL_S)
        if self._loading.get(guild_id) is asyncio.current_task():  # not forgotten since
            self._guilds.pop(guild_id, None)
            if len(self._guilds) >= MAX_GUILDS:
                del self._guilds[next(iter(self._guilds))]
            self._guilds[guild_id] = shell
        return shell

    async def application_flags(self, application_id: int) -> int:
        """A bot application's effective flags (``storage.applications``), cached for
        ``GUILD_TTL_S``: an operator's change reaches IDENTIFY within that."""
        flags = self._app_flags.get(application_id)
        if flags is None:
            flags = effective_flags(await self.storage.application_flags(application_id))
            self._app_flags.put(application_id, flags)
        return flags

    def _loaded(self, guild_id: int, done: asyncio.Future[GuildShell | None]) -> None:
        if self._loading.get(guild_id) is done:
            del self._loading[guild_id]

    def forget_guild(self, guild_id: int) -> None:
        """This process changed the guild's channels or members: read them again (a
        load already in flight may predate the change: it is not reused either)."""
        self._guilds.pop(guild_id, None)
        self._loading.pop(guild_id, None)

    async def load_guild(self, guild_id: int, user_id: int, *, large_threshold: int,
                         all_members: bool) -> tuple[dict[str, Any], Member] | None:
        """The guild dict for ``user_id``'s GUILD_CREATE and its member; None if the
        guild is gone or the user is no member (a guild joined after READY)."""
        shell, me, user = await asyncio.gather(
            self.guild_shell(guild_id), self.storage.get_member(guild_id, user_id),
            self.storage.get_user(user_id))
        if shell is None or me is None or user is None:
            return None
        return await self._guild(shell, me, user, large_threshold, all_members), me

    async def _guild(self, shell: GuildShell, me: Member, user: User, large_threshold: int,
                     all_members: bool) -> dict[str, Any]:
        """``all_members`` (GUILD_PRESENCES): list every member of a guild of at most
        ``large_threshold`` members; otherwise only the caller."""
        if all_members and 1 < shell.member_count <= large_threshold:
            members = await self.storage.members_for_guild(me.guild_id, large_threshold + 1)
            users = await self.storage.get_users(m.user_id for m in members)
            listed = [member_object(m, users.get(m.user_id)) for m in members]
        else:
            listed = [member_object(me, user)]
        guild = SharedGuild(shell.fields, shell.encoded)
        guild["joined_at"] = iso(me.joined_at_ms)
        guild["member_count"] = max(shell.member_count, len(listed))
        guild["large"] = guild["member_count"] > large_threshold
        guild["members"] = listed
        return guild

    async def load_identity(self, token: str, *, large_threshold: int,
                            all_members: bool) -> Identity | None:
        """The user and guilds for ``token``; None if the token is not valid. One
        storage call when the guilds' shells are cached."""
        account = await self.storage.account_for_token(token)
        if account is None:
            return None
        user, mine = account
        now = self.clock()
        cached = [self._guilds.get(m.guild_id) for m in mine]
        # its application's flags, for a bot: which privileged intents it may ask for
        flags = self._app_flags.get(user.id) if user.bot else 0
        if flags is None or any(s is None or s.expires <= now for s in cached):
            # something to load: concurrently (what is cached answers at once)
            lookups: list[Awaitable[Any]] = [self.guild_shell(m.guild_id) for m in mine]
            if user.bot:
                lookups.append(self.application_flags(user.id))
            found = await asyncio.gather(*lookups)
            shells = found[:len(mine)]
            flags = found[-1] if user.bot else 0
        else:  # the usual case: no task, no loop round per guild
            shells = cached
        guilds, members = [], {}
        for me, shell in zip(mine, shells, strict=True):
            if shell is not None:
                guilds.append(await self._guild(shell, me, user, large_threshold, all_members))
                members[me.guild_id] = me
        return Identity(user_object(user), guilds, members, flags)


#: GUILD_MEMBERS_CHUNK holds at most this many members (Discord's chunk size).
CHUNK_SIZE = 1000
#: Most members a ``query`` or ``user_ids`` request answers (Discord's cap for both).
MAX_QUERY_MEMBERS = 100


async def member_chunks(storage: Storage, request: GuildMembersRequested,
                        *, everyone: bool) -> list[dict[str, Any]]:
    """The GUILD_MEMBERS_CHUNK payloads answering op 8 (at least one, so a client waiting
    on its ``nonce`` always hears back). ``everyone``: the session may list the whole
    guild (the GUILD_MEMBERS intent); without it a request for every member (query ""
    and limit 0) gets an empty answer. ``query`` matches a username or nickname prefix,
    case-insensitively, as Discord does."""
    guild_id = request.guild_id
    not_found: list[str] | None = None
    found: list[dict[str, Any]] = []
    if request.user_ids is not None:
        wanted = list(dict.fromkeys(request.user_ids))[:MAX_QUERY_MEMBERS]
        rows = await asyncio.gather(*(storage.get_member(guild_id, u) for u in wanted))
        members = [m for m in rows if m is not None]
        users = await storage.get_users(m.user_id for m in members)
        found = [member_object(m, users.get(m.user_id)) for m in members]
        not_found = [str(u) for u, m in zip(wanted, rows, strict=True) if m is None]
    elif request.query == "" and request.limit == 0:
        if everyone:
            after = None
            while True:
                page = await storage.members_for_guild(guild_id, CHUNK_SIZE, after=after)
                users = await storage.get_users(m.user_id for m in page)
                found.extend(member_object(m, users.get(m.user_id)) for m in page)
                if len(page) < CHUNK_SIZE:
                    break
                after = page[-1].user_id
    else:
        prefix = (request.query or "").casefold()
        limit = min(request.limit or MAX_QUERY_MEMBERS, MAX_QUERY_MEMBERS)
        after = None
        while len(found) < limit:
            page = await storage.members_for_guild(guild_id, CHUNK_SIZE, after=after)
            users = await storage.get_users(m.user_id for m in page)
            for m in page:
                user = users.get(m.user_id)
                names = (user.username if user else "", m.nick or "")
                if any(n.casefold().startswith(prefix) for n in names if n):
                    found.append(member_object(m, user))
                    if len(found) >= limit:
                        break
            if len(page) < CHUNK_SIZE:
                break
            after = page[-1].user_id
    parts = [found[i:i + CHUNK_SIZE] for i in range(0, len(found), CHUNK_SIZE)] or [[]]
    chunks = []
    for index, part in enumerate(parts):
        chunk: dict[str, Any] = {"guild_id": str(guild_id), "members": part,
                                 "chunk_index": index, "chunk_count": len(parts)}
        if not_found is not None and index == 0:
            chunk["not_found"] = not_found
        if request.presences:
            chunk["presences"] = []  # no stored presences: everyone listed shows offline
        if request.nonce is not None:
            chunk["nonce"] = request.nonce
        chunks.append(chunk)
    return chunks
