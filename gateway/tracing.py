"""Span helpers for the gateway's hops (socket in, session, guild, channel, storage
write, fan-out, socket out): one trace per message, carried in each actor message's
``trace`` field (the W3C context of the sending hop's span), never in a global.

A hop whose incoming ``trace`` is None does no tracing work at all. The origin (REST,
ingress, IDENTIFY) starts its root span with ``observability.span_from``; the sampler
(``observability.sampling``) decides there, once per message, and an unsampled or
untraced message leaves with ``trace`` None (``inject_current()``), so the
per-recipient hops of a fan-out cost one ``is None`` test each. A ``trace`` that does
arrive while this process keeps no spans (no exporter) is not parsed: ``start`` answers
the shared invalid span, whose context is None again.
"""

from __future__ import annotations

from typing import Any

from observability.sampling import FANOUT_RECIPIENTS
from observability.spans import child, context_of, fail, start
from observability.tracing import tracing_active

__all__ = ["child", "context_of", "fail", "fanout_attributes", "start"]


async def fanout_attributes(identity: Any, guild_id: int | None,
                            attributes: dict[str, Any]) -> dict[str, Any]:
    """``attributes`` plus ``greenroom.fanout.recipients`` for a message entering for
    ``guild_id``'s channel: what the fan-out sampler decides on. Only when spans can be
    kept (else nothing is read); the count is the guild's member count from the
    process's guild cache (``IdentityCache.guild_shell``: no storage call within its TTL),
    the recipients a message can reach at most."""
    if not tracing_active():
        return attributes
    shell = None
    if identity is not None and guild_id is not None:
        try:
            shell = await identity.guild_shell(guild_id)
        except Exception:  # storage trouble: the request meets it next and reports it
            return attributes  # unknown size: a root without it is kept
    attributes[FANOUT_RECIPIENTS] = shell.member_count if shell is not None else 1
    return attributes
