"""Application commands over REST (aiohttp against a real node): who may manage them,
create as an upsert, list, get, edit, delete, bulk overwrite, both scopes, the limits
(30032) and 50035 with every field path, the command permissions reads and Discord's
refusal of a bot token for their edit; and random bodies never answered 500."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import aiohttp

from gateway.seed import create_guild, create_user
from storage.snowflake import SnowflakeGenerator
from tests.gateway.harness import Running, run, running_gateway


async def call(http: aiohttp.ClientSession, r: Running, method: str, path: str,
               token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    async with http.request(method, f"{r.gateway.rest_url}{path}", headers=headers,
                            **kwargs) as resp:
        if resp.status == 204:
            return 204, None
        assert resp.headers["Content-Type"] == "application/json"
        return resp.status, await resp.json()


def slash(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "description": f"the {name} command", **fields}


def test_who_may_manage_an_applications_commands(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            app, token, gid = r.seeded.user_id, r.seeded.token, r.seeded.guild_id
            ids = SnowflakeGenerator(worker=3)
            other_bot, other_token = await create_user(r.gateway.storage, ids, "other-bot")
            lonely_guild, _ = await create_guild(r.gateway.storage, ids, "elsewhere", other_bot)
            assert (await call(http, r, "GET", f"/applications/{app}/commands"))[0] == 401
            cases = [
                (token, f"/applications/0{app}/commands", 404, 10002),
                (token, f"/applications/{other_bot}/commands", 403, 50001),
                (other_token, f"/applications/{app}/commands", 403, 50001),
                (r.other_token, f"/applications/{r.other_id}/commands", 403, 50001),  # a user
                (token, f"/applications/{app}/guilds/{lonely_guild}/commands", 403, 50001),
                (token, f"/applications/{app}/guilds/{ids.next_id()}/commands", 404, 10004),
                (token, f"/applications/{app}/guilds/x/commands", 404, 10004),
            ]
            for who, path, status, code in cases:
                for method, body in (("GET", None), ("POST", slash("a")), ("PUT", [])):
                    got = await call(http, r, method, path, who, json=body)
                    assert (got[0], got[1]["code"]) == (status, code), (method, path, got)
            status, body = await call(http, r, "GET", f"/applications/{app}/commands/x", token)
            assert (status, body["code"]) == (404, 10063)
            # the other bot manages its own, in its own guild; this one sees none of them
            status, _ = await call(http, r, "POST",
                                   f"/applications/{other_bot}/guilds/{lonely_guild}/commands",
                                   other_token, json=slash("theirs"))
            assert status == 201
            status, body = await call(http, r, "GET", f"/applications/{app}/commands", token)
            assert (status, body) == (200, [])
            assert (await call(http, r, "GET", f"/applications/{app}/guilds/{gid}/commands",
                               token))[1] == []

    run(main)


def test_create_upsert_get_edit_delete_in_both_scopes(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            app, token, gid = r.seeded.user_id, r.seeded.token, r.seeded.guild_id
            base, guild = f"/applications/{app}/commands", f"/applications/{app}/guilds/{gid}/commands"
            status, made = await call(http, r, "POST", base, token, json=slash(
                "blep", name_localizations={"fr": "blep-fr"},
                options=[{"type": 3, "name": "animal", "description": "which", "required": True,
                          "choices": [{"name": "Dog", "value": "dog"}]}],
                default_member_permissions="32", contexts=[0, 1]))
            assert status == 201
            assert made["application_id"] == str(app) and made["type"] == 1
            assert "guild_id" not in made and made["version"] == made["id"]
            assert made["name_localizations"] == {"fr": "blep-fr"}
            assert made["default_member_permissions"] == "32" and made["dm_permission"] is True
            assert made["contexts"] == [0, 1] and made["integration_types"] == [0]
            assert made["nsfw"] is False
            assert made["options"][0]["choices"] == [{"name": "Dog", "value": "dog"}]
            # the same type and name again: the same command, updated (200, a new version)
            status, again = await call(http, r, "POST", base, token,
                                       json=slash("blep", description="changed",
                                                  name_localizations={"de": "blep-de"}))
            assert status == 200 and again["id"] == made["id"]
            assert again["description"] == "changed" and again["options"] == []
            assert int(again["version"]) > int(made["version"])
            status, user_cmd = await call(http, r, "POST", base, token,
                                          json={"type": 2, "name": "High Five"})
            assert status == 201 and user_cmd["description"] == "" and "options" not in user_cmd
            status, in_guild = await call(http, r, "POST", guild, token, json=slash("blep"))
            assert status == 201 and in_guild["guild_id"] == str(gid)
            assert in_guild["id"] != made["id"]
            status, listed = await call(http, r, "GET", base, token)
            assert [c["id"] for c in listed] == [made["id"], user_cmd["id"]]
            # a list read has the localization dictionaries only when asked for (Discord)
            assert "name_localizations" not in listed[0]
            status, full = await call(http, r, "GET", f"{base}?with_localizations=true", token)
            assert full[0]["name_localizations"] == {"de": "blep-de"}  # the upsert replaced all
            assert [c["id"] for c in (await call(http, r, "GET", guild, token))[1]] == [
                in_guild["id"]]
            assert (await call(http, r, "GET", f"{base}/{made['id']}", token)) == (200, again)
            # a command is found only in its own scope
            assert (await call(http, r, "GET", f"{guild}/{made['id']}", token))[1]["code"] == 10063
            assert (await call(http, r, "GET", f"{base}/{in_guild['id']}", token))[1]["code"] \
                == 10063
            status, edited = await call(http, r, "PATCH", f"{guild}/{in_guild['id']}", token,
                                        json={"name": "renamed", "nsfw": True})
            assert status == 200 and (edited["name"], edited["nsfw"]) == ("renamed", True)
            assert edited["description"] == in_guild["description"]
            assert edited["version"] != in_guild["version"]
            status, body = await call(http, r, "PATCH", f"{base}/{made['id']}", token,
                                      json={"name": "Bad", "options": [{"type": 99}]})
            assert status == 400 and body["code"] == 50035
            assert body["errors"]["name"]["_errors"][0]["code"] == "APPLICATION_COMMAND_INVALID_NAME"
            assert body["errors"]["options"]["0"]["type"]["_errors"][0]["code"] \
                == "ENUM_TYPE_COERCE"
            assert (await call(http, r, "DELETE", f"{guild}/{in_guild['id']}", token)) == (204, None)
            assert (await call(http, r, "DELETE", f"{guild}/{in_guild['id']}", token))[1]["code"] \
                == 10063
            assert (await call(http, r, "GET", f"{guild}/{in_guild['id']}", token))[0] == 404
            assert (await call(http, r, "PATCH", f"{base}/123", token, json={}))[1]["code"] \
                == 10063

    run(main)


def test_bulk_overwrite_and_the_limits(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            app, token, gid = r.seeded.user_id, r.seeded.token, r.seeded.guild_id
            base, guild = f"/applications/{app}/commands", f"/applications/{app}/guilds/{gid}/commands"
            _, kept = await call(http, r, "POST", base, token, json=slash("kept"))
            _, gone = await call(http, r, "POST", base, token, json=slash("gone"))
            status, out = await call(http, r, "PUT", base, token, json=[
                slash("kept"), slash("new"), {"type": 3, "name": "Quote"}])
            assert status == 200 and [c["name"] for c in out] == ["kept", "new", "Quote"]
            assert out[0] == kept  # unchanged: same id, same version
            assert (await call(http, r, "GET", f"{base}/{gone['id']}", token))[0] == 404
            status, body = await call(http, r, "PUT", base, token, json=[
                slash("a"), slash("a"), slash("b", description="")])
            assert status == 400 and body["code"] == 50035
            assert body["errors"] == {
                "1": {"_errors": [{"code": "APPLICATION_COMMANDS_DUPLICATE_NAME",
                                   "message": "Application command names must be unique"}]},
                "2": {"description": {"_errors": [{
                    "code": "BASE_TYPE_BAD_LENGTH", "message": "Must be between 1 and 100 in length."}]}}}
            status, body = await call(http, r, "PUT", base, token, json={"name": "x"})
            assert (status, body["code"]) == (400, 50035)
            assert body["errors"]["_errors"][0]["code"] == "LIST_TYPE_CONVERT"
            status, body = await call(http, r, "PUT", base, token, data=b"[")
            assert (status, body["code"]) == (400, 50035)
            assert len((await call(http, r, "GET", base, token))[1]) == 3  # nothing changed
            # 100 slash commands and 15 of each context menu type per scope
            status, body = await call(http, r, "PUT", guild, token,
                                      json=[slash(f"c{i}") for i in range(101)])
            assert (status, body["code"]) == (400, 30032)
            assert body["message"] == "Maximum number of application commands reached (100)"
            status, out = await call(http, r, "PUT", guild, token,
                                     json=[slash(f"c{i}") for i in range(100)]
                                     + [{"type": 2, "name": f"U{i}"} for i in range(15)])
            assert status == 200 and len(out) == 115
            status, body = await call(http, r, "POST", guild, token, json=slash("c100"))
            assert (status, body["code"]) == (400, 30032)
            status, body = await call(http, r, "POST", guild, token, json={"type": 2, "name": "U15"})
            assert (status, body["code"], body["message"]) == (
                400, 30032, "Maximum number of application commands reached (15)")
            status, _ = await call(http, r, "POST", guild, token, json=slash("c5", nsfw=True))
            assert status == 200  # an upsert is not a new command
            status, _ = await call(http, r, "POST", guild, token, json={"type": 3, "name": "M"})
            assert status == 201
            assert (await call(http, r, "PUT", guild, token, json=[]))[1] == []

    run(main)


def test_a_large_localised_bulk_overwrite_fits_and_past_the_limit_is_413(tmp_path: Path) -> None:
    locales = ["fr", "de", "es-ES", "ja", "pt-BR"]

    def option(i: int) -> dict[str, Any]:
        return {"type": 3, "name": f"option_{i:02d}", "description": "d" * 90,
                "name_localizations": {loc: f"option_{i:02d}" for loc in locales},
                "description_localizations": {loc: "é" * 90 for loc in locales}}

    commands = [{**slash(f"command_{n:03d}", description="x" * 90),
                 "description_localizations": {loc: "ü" * 90 for loc in locales},
                 "options": [option(i) for i in range(10)]} for n in range(100)]
    # as discord.py sends JSON: ASCII-escaped, ~3.4 MB (aiohttp's default cap is 1 MiB)
    body = json.dumps(commands, separators=(",", ":"), ensure_ascii=True).encode()
    assert len(body) > 3_000_000

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            base = f"/applications/{r.seeded.user_id}/commands"
            headers = {"Content-Type": "application/json"}
            status, out = await call(http, r, "PUT", base, r.seeded.token, data=body,
                                     headers=headers)
            assert status == 200 and len(out) == 100
            assert out[99]["options"][9]["description_localizations"]["ja"] == "é" * 90
            status, answer = await call(http, r, "PUT", base, r.seeded.token,
                                        data=b" " * (16 * 1024 * 1024 + 1), headers=headers)
            assert (status, answer["code"]) == (413, 40005)

    run(main)


def test_50035_names_every_violation_with_its_path(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            base = f"/applications/{r.seeded.user_id}/commands"
            status, body = await call(http, r, "POST", base, r.seeded.token, json={
                "name": "Has Space", "description": "x" * 101,
                "options": [
                    {"type": 3, "name": "opt", "description": "o",
                     "choices": [{"name": "a", "value": "a"}], "autocomplete": True},
                    {"type": 4, "name": "num", "description": "n", "required": True,
                     "min_value": 10, "max_value": 1},
                    {"type": 1, "name": "sub", "description": "s"}]})
            assert (status, body["code"], body["message"]) == (400, 50035, "Invalid Form Body")
            errors = body["errors"]
            assert set(errors) == {"name", "description", "options"}
            assert errors["options"]["_errors"][0]["code"] == \
                "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID"
            assert errors["options"]["0"]["autocomplete"]["_errors"][0]["code"] == \
                "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_CHOICES"
            assert errors["options"]["1"]["_errors"][0]["code"] == \
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID"
            assert errors["options"]["1"]["max_value"]["_errors"][0]["code"] == "NUMBER_TYPE_MIN"
            status, body = await call(http, r, "POST", base, r.seeded.token, json=[1])
            assert (status, body["code"]) == (400, 50035)
            status, body = await call(http, r, "POST", base, r.seeded.token, json={
                "name": "x", "description": "y", "options": [
                    {"type": 3, "name": f"o{i}", "description": "d"} for i in range(26)]})
            assert body["errors"]["options"]["_errors"][0] == {
                "code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 25 or fewer in length."}

    run(main)


def test_command_permissions_read_as_discord_and_a_bot_cannot_edit_them(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            app, token, gid = r.seeded.user_id, r.seeded.token, r.seeded.guild_id
            guild = f"/applications/{app}/guilds/{gid}/commands"
            _, command = await call(http, r, "POST", guild, token, json=slash("perm"))
            _, global_cmd = await call(http, r, "POST", f"/applications/{app}/commands", token,
                                       json=slash("everywhere"))
            assert await call(http, r, "GET", f"{guild}/permissions", token) == (200, [])
            for cid in (command["id"], global_cmd["id"], app):
                status, body = await call(http, r, "GET", f"{guild}/{cid}/permissions", token)
                assert (status, body["code"]) == (404, 10066), cid
            status, body = await call(http, r, "GET", f"{guild}/12345/permissions", token)
            assert (status, body["code"]) == (404, 10063)
            status, body = await call(http, r, "PUT", f"{guild}/{command['id']}/permissions",
                                      token, json={"permissions": [
                                          {"id": str(gid), "type": 1, "permission": False}]})
            assert (status, body) == (403, {"code": 20001,
                                            "message": "Bots cannot use this endpoint"})
            status, body = await call(http, r, "PUT", f"{guild}/permissions", token, json=[])
            assert status == 405  # the batch edit: disabled on Discord
            status, body = await call(http, r, "GET", f"{guild}/permissions", "bad")
            assert status == 401

    run(main)


def test_random_bodies_are_answered_as_discord_never_500(tmp_path: Path) -> None:
    rng = random.Random(13)
    leaves: list[Any] = [None, True, 0, -1, 1 << 60, 2.5, "", "x", "Ab c", "a\ud800", "\x00",
                         "x" * 200, [], {}]
    keys = ["name", "description", "type", "options", "choices", "value", "required",
            "min_value", "max_value", "min_length", "max_length", "autocomplete",
            "channel_types", "name_localizations", "default_member_permissions",
            "dm_permission", "contexts", "integration_types", "nsfw", "id", "fr"]

    def value(depth: int = 0) -> Any:
        kind = rng.randrange(4 if depth < 4 else 1)
        if kind == 0:
            return rng.choice(leaves + [rng.randrange(0, 13)])
        if kind == 1:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        body = {rng.choice(keys): value(depth + 1) for _ in range(rng.randrange(6))}
        if rng.random() < 0.5:
            body.update(name=rng.choice(["ok", "Bad", ""]), description="d")
        return body

    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            app, token, gid = r.seeded.user_id, r.seeded.token, r.seeded.guild_id
            base = f"/applications/{app}/guilds/{gid}/commands"
            _, made = await call(http, r, "POST", base, token, json=slash("target"))
            statuses: set[int] = set()
            for _ in range(150):
                method, path = rng.choice([("POST", base), ("PUT", base),
                                           ("PATCH", f"{base}/{made['id']}")])
                body = value()
                if method == "PUT" and rng.random() < 0.7:
                    body = [value() for _ in range(rng.randrange(3))]
                status, answer = await call(http, r, method, path, token, json=body)
                statuses.add(status)
                assert status in (200, 201, 400, 404), (method, body, answer)
                if status >= 400:
                    assert set(answer) >= {"code", "message"}
            assert 400 in statuses and statuses & {200, 201}

    run(main, timeout=60)
