"""chat.permissions: a channel's overwrites against Discord's documented pseudo-code
(developers/topics/permissions: "Permission Overwrites", "Implicit Permissions")."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chat.permissions import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    ATTACH_FILES,
    EMBED_LINKS,
    MANAGE_ROLES,
    MEMBER_OVERWRITE,
    MENTION_EVERYONE,
    READ_MESSAGE_HISTORY,
    ROLE_OVERWRITE,
    SEND_MESSAGES,
    SEND_TTS_MESSAGES,
    VIEW_CHANNEL,
    Overwrite,
    channel_permissions,
    implicit,
    overwritten_allow,
)
from storage.model import Guild, Member, Role

GUILD = 100
OWNER = 1
USER = 2
ROLE_IDS = (11, 12, 13, 14)


def discord_reference(guild: Guild, roles: dict[int, Role], member: Member,
                      overwrites: list[Overwrite]) -> int:
    """Discord's pseudo-code, transcribed line by line (compute_base_permissions,
    compute_overwrites), then the two implicit rules of the same page."""
    if member.user_id == guild.owner_id:
        return ALL_PERMISSIONS
    permissions = roles[guild.id].permissions
    for role_id in member.roles:
        if role_id in roles:
            permissions |= roles[role_id].permissions
    if permissions & ADMINISTRATOR == ADMINISTRATOR:
        return ALL_PERMISSIONS
    by_id = {o.id: o for o in overwrites}
    overwrite_everyone = by_id.get(guild.id)
    if overwrite_everyone:
        permissions &= ~overwrite_everyone.deny
        permissions |= overwrite_everyone.allow
    allow = deny = 0
    for role_id in member.roles:
        overwrite_role = by_id.get(role_id)
        if overwrite_role:
            allow |= overwrite_role.allow
            deny |= overwrite_role.deny
    permissions &= ~deny
    permissions |= allow
    overwrite_member = by_id.get(member.user_id)
    if overwrite_member:
        permissions &= ~overwrite_member.deny
        permissions |= overwrite_member.allow
    if not permissions & VIEW_CHANNEL:
        return 0
    if not permissions & SEND_MESSAGES:
        permissions &= ~(MENTION_EVERYONE | SEND_TTS_MESSAGES | ATTACH_FILES | EMBED_LINKS)
    return permissions


# Bits drawn from a few that matter (so collisions are common) plus any channel bit.
bits = st.integers(0, (1 << 20) - 1).map(lambda b: b & ~ADMINISTRATOR) | st.sampled_from(
    [VIEW_CHANNEL, SEND_MESSAGES, VIEW_CHANNEL | SEND_MESSAGES, ADMINISTRATOR, 0])


@st.composite
def scenes(draw: st.DrawFn) -> tuple[Guild, dict[int, Role], Member, list[Overwrite]]:
    roles = {GUILD: Role(GUILD, GUILD, "@everyone", permissions=draw(bits))}
    for role_id in ROLE_IDS:
        roles[role_id] = Role(GUILD, role_id, f"r{role_id}", permissions=draw(bits))
    member_roles = draw(st.lists(st.sampled_from(ROLE_IDS), unique=True))
    user = draw(st.sampled_from([USER, USER, USER, OWNER]))
    member = Member(GUILD, user, 0, roles=member_roles)
    targets = draw(st.lists(st.sampled_from([GUILD, *ROLE_IDS, USER]), unique=True))
    overwrites = [Overwrite(t, MEMBER_OVERWRITE if t == USER else ROLE_OVERWRITE,
                            draw(bits), draw(bits)) for t in targets]
    return Guild(GUILD, "g", OWNER), roles, member, overwrites


@given(scenes())
def test_matches_discords_pseudo_code(scene: tuple) -> None:
    guild, roles, member, overwrites = scene
    got = channel_permissions(guild, roles, member, {o.id: o for o in overwrites})
    assert got == discord_reference(guild, roles, member, overwrites)


@given(scenes(), st.permutations(ROLE_IDS))
def test_order_of_the_members_roles_does_not_matter(scene: tuple, order: list[int]) -> None:
    guild, roles, member, overwrites = scene
    by_id = {o.id: o for o in overwrites}
    shuffled = Member(GUILD, member.user_id, 0,
                      roles=[r for r in order if r in member.roles])
    assert channel_permissions(guild, roles, shuffled, by_id) \
        == channel_permissions(guild, roles, member, by_id)


def _scene(everyone: int, *, member_roles: tuple[int, ...] = (),
           role_perms: int = 0) -> tuple[Guild, dict[int, Role], Member]:
    roles = {GUILD: Role(GUILD, GUILD, "@everyone", permissions=everyone)}
    for role_id in ROLE_IDS:
        roles[role_id] = Role(GUILD, role_id, "r", permissions=role_perms)
    return Guild(GUILD, "g", OWNER), roles, Member(GUILD, USER, 0, roles=list(member_roles))


READ_SEND = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY


def test_no_overwrites_is_the_guild_level() -> None:
    guild, roles, member = _scene(READ_SEND | EMBED_LINKS)
    assert channel_permissions(guild, roles, member, {}) == READ_SEND | EMBED_LINKS


def test_everyone_deny_hides_the_channel_and_a_role_allow_shows_it_again() -> None:
    guild, roles, member = _scene(READ_SEND, member_roles=(11,))
    hidden = {GUILD: Overwrite(GUILD, ROLE_OVERWRITE, deny=VIEW_CHANNEL)}
    assert channel_permissions(guild, roles, member, hidden) == 0  # implicit: nothing
    shown = {**hidden, 11: Overwrite(11, ROLE_OVERWRITE, allow=VIEW_CHANNEL)}
    assert channel_permissions(guild, roles, member, shown) == READ_SEND


def test_a_role_allow_beats_another_roles_deny() -> None:
    guild, roles, member = _scene(READ_SEND, member_roles=(11, 12))
    overwrites = {11: Overwrite(11, ROLE_OVERWRITE, deny=SEND_MESSAGES),
                  12: Overwrite(12, ROLE_OVERWRITE, allow=SEND_MESSAGES)}
    assert channel_permissions(guild, roles, member, overwrites) & SEND_MESSAGES


def test_the_member_overwrite_comes_last() -> None:
    guild, roles, member = _scene(READ_SEND, member_roles=(11,))
    overwrites = {11: Overwrite(11, ROLE_OVERWRITE, allow=MANAGE_ROLES),
                  USER: Overwrite(USER, MEMBER_OVERWRITE, deny=VIEW_CHANNEL | MANAGE_ROLES)}
    assert channel_permissions(guild, roles, member, overwrites) == 0
    overwrites[USER] = Overwrite(USER, MEMBER_OVERWRITE, deny=MANAGE_ROLES)
    assert channel_permissions(guild, roles, member, overwrites) == READ_SEND


def test_overwrites_for_roles_the_member_lacks_or_of_the_wrong_type_do_not_apply() -> None:
    guild, roles, member = _scene(READ_SEND, member_roles=(11,))
    overwrites = {12: Overwrite(12, ROLE_OVERWRITE, deny=VIEW_CHANNEL),
                  # a role overwrite whose id is the member's: not theirs
                  USER: Overwrite(USER, ROLE_OVERWRITE, deny=VIEW_CHANNEL),
                  11: Overwrite(11, MEMBER_OVERWRITE, deny=VIEW_CHANNEL)}
    assert channel_permissions(guild, roles, member, overwrites) == READ_SEND


def test_owner_and_administrators_are_untouched_by_overwrites() -> None:
    deny_all = {GUILD: Overwrite(GUILD, ROLE_OVERWRITE, deny=ALL_PERMISSIONS),
                USER: Overwrite(USER, MEMBER_OVERWRITE, deny=ALL_PERMISSIONS)}
    guild, roles, member = _scene(READ_SEND, member_roles=(11,), role_perms=ADMINISTRATOR)
    assert channel_permissions(guild, roles, member, deny_all) == ALL_PERMISSIONS
    owner = Member(GUILD, OWNER, 0)
    guild, roles, _ = _scene(0)
    assert channel_permissions(guild, roles, owner, deny_all) == ALL_PERMISSIONS


def test_an_overwrite_cannot_grant_administrator() -> None:
    guild, roles, member = _scene(READ_SEND)
    got = channel_permissions(guild, roles, member,
                              {USER: Overwrite(USER, MEMBER_OVERWRITE, allow=ADMINISTRATOR)})
    assert got != ALL_PERMISSIONS


def test_without_send_messages_what_rides_on_a_send_goes_too() -> None:
    everything = READ_SEND | MENTION_EVERYONE | SEND_TTS_MESSAGES | ATTACH_FILES | EMBED_LINKS
    assert implicit(everything) == everything
    assert implicit(everything & ~SEND_MESSAGES) == VIEW_CHANNEL | READ_MESSAGE_HISTORY
    assert implicit(everything & ~VIEW_CHANNEL) == 0


def test_an_explicit_allow_in_the_channel() -> None:
    overwrites = {11: Overwrite(11, ROLE_OVERWRITE, allow=MANAGE_ROLES),
                  USER: Overwrite(USER, MEMBER_OVERWRITE, allow=VIEW_CHANNEL)}
    assert overwritten_allow(GUILD, USER, [11], overwrites, MANAGE_ROLES)
    assert not overwritten_allow(GUILD, USER, [12], overwrites, MANAGE_ROLES)
    assert overwritten_allow(GUILD, USER, [], overwrites, VIEW_CHANNEL)
    assert not overwritten_allow(GUILD, 3, [], overwrites, VIEW_CHANNEL)


def test_overwrite_object() -> None:
    assert Overwrite(5, MEMBER_OVERWRITE, 1 << 40, 3).to_json() == {
        "id": "5", "type": 1, "allow": str(1 << 40), "deny": "3"}
