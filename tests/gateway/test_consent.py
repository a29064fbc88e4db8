"""Consent for adding members (issue 10, finding 5): ``PUT /guilds/{g}/members/{u}``
adds a user only with that user's ``guilds.join`` grant to the caller's application
(``POST /oauth2/authorize`` by the user's own token), as Discord requires an OAuth2
``access_token``; over real sockets."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from gateway.seed import create_user
from storage.grants import OAuth2Grant
from storage.snowflake import SnowflakeGenerator
from tests.gateway.harness import Running, run, running_gateway
from tests.gateway.test_rest import call


async def consent(http: aiohttp.ClientSession, r: Running, user_token: str,
                  application_id: int) -> str:
    """The access token of ``user_token``'s user consenting to ``guilds.join`` for
    ``application_id``."""
    status, body, _ = await call(http, r, "POST", "/oauth2/authorize", user_token,
                                 json={"client_id": str(application_id),
                                       "scope": "guilds.join"})
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["scope"] == "guilds.join"
    assert body["expires_in"] == 604_800
    return body["access_token"]


def test_adding_a_member_needs_their_consent(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            bot, alice, alice_id = r.seeded.token, r.other_token, r.other_id
            ids = SnowflakeGenerator(worker=3)
            eve_id, eve = await create_user(r.gateway.storage, ids, "eve", bot=False)
            other_app, _ = await create_user(r.gateway.storage, ids, "other-bot")
            status, guild, _ = await call(http, r, "POST", "/guilds", bot,
                                          json={"name": "the bot's own"})
            assert status == 201
            path = f"/guilds/{guild['id']}/members/{alice_id}"

            # No token, a made-up one, another user's, one for another application:
            # refused, and alice is not added.
            status, body, _ = await call(http, r, "PUT", path, bot, json={})
            assert status == 400 and body["code"] == 50035
            assert body["errors"]["access_token"]["_errors"][0]["code"] == "BASE_TYPE_REQUIRED"
            eves = await consent(http, r, eve, r.seeded.user_id)
            for token in ("made-up", "\u00e9" * 10, eves, await consent(http, r, alice, other_app)):
                status, body, _ = await call(http, r, "PUT", path, bot,
                                             json={"access_token": token})
                assert status == 403, (token, body)
                assert body == {"code": 50025, "message": "Invalid OAuth2 access token provided"}
            # An expired grant of the right user and application is refused too.
            await r.gateway.storage.put_oauth2_grant("expired", OAuth2Grant(
                alice_id, r.seeded.user_id, ("guilds.join",), int(time.time() * 1000) - 1))
            status, body, _ = await call(http, r, "PUT", path, bot,
                                         json={"access_token": "expired"})
            assert status == 403 and body["code"] == 50025
            assert await r.gateway.storage.get_member(int(guild["id"]), alice_id) is None

            # Her own grant to the bot's application adds her (reusable until it expires,
            # as Discord's access tokens are); eve's grant adds eve.
            grant = await consent(http, r, alice, r.seeded.user_id)
            status, member, _ = await call(http, r, "PUT", path, bot,
                                           json={"access_token": grant})
            assert status == 201 and member["user"]["id"] == str(alice_id)
            status, member, _ = await call(http, r, "PUT",
                                           f"/guilds/{guild['id']}/members/{eve_id}", bot,
                                           json={"access_token": eves})
            assert status == 201 and member["user"]["id"] == str(eve_id)
            # A grant is no key to a guild: eve, no member of the seeded guild, cannot
            # add herself with it.
            status, body, _ = await call(http, r, "PUT",
                                         f"/guilds/{r.seeded.guild_id}/members/{eve_id}",
                                         eve, json={"access_token": eves})
            assert status == 403 and body["code"] == 50001

    run(main)


def test_authorize_answers_bad_requests_as_discord(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            alice, app = r.other_token, str(r.seeded.user_id)
            status, body, _ = await call(http, r, "POST", "/oauth2/authorize", None,
                                         json={"client_id": app, "scope": "guilds.join"})
            assert status == 401 and body == {"code": 0, "message": "401: Unauthorized"}
            for client_id in (f"0{app}", f"+{app}", "1_2", "\uff11\uff12", str(1 << 63), "-1",
                              None, "\ud800", 1.5, [app]):
                status, body, _ = await call(http, r, "POST", "/oauth2/authorize", alice,
                                             json={"client_id": client_id,
                                                   "scope": "guilds.join"})
                assert status == 400 and body["code"] == 50035, (client_id, body)
                assert "client_id" in body["errors"]
            status, body, _ = await call(http, r, "POST", "/oauth2/authorize", alice,
                                         json={"client_id": app, "scope": "bot"})
            assert status == 400 and "scope" in body["errors"]
            # Not an application: a user that is no bot, or no user at all.
            for client_id in (str(r.other_id), "12345"):
                status, body, _ = await call(http, r, "POST", "/oauth2/authorize", alice,
                                             json={"client_id": client_id,
                                                   "scope": "guilds.join"})
                assert status == 404 and body["code"] == 10002
            # Discord's authorize URL form: the parameters in the query.
            status, body, _ = await call(
                http, r, "POST", f"/oauth2/authorize?client_id={app}&scope=guilds.join", alice)
            assert status == 200 and body["access_token"]

    run(main)
