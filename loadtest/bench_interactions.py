"""``python -m loadtest.bench_interactions``: commands invoked by users and answered by a
bot with a message (type 4), against the plain message path, in the same run.

1. A fresh SQLite database: the ``make run`` seed and ``--users`` users in its guild;
   ``greenroom run --nodes 1 --no-rate-limits`` (the load comes from few users: the
   shipped per-user buckets would refuse it).
2. The bot (its own process): one session (GUILDS: INTERACTION_CREATE needs no
   intent); it registers a guild command ``/bench t:<text>`` and answers every
   INTERACTION_CREATE at once with a callback of type 4 whose content is ``t`` and its
   own think time (receipt of the dispatch -> its callback sent, in ns).
3. The users (``--processes`` worker processes): one session each (GUILDS |
   GUILD_MESSAGES | MESSAGE_CONTENT: greenroom applies the content rule to users too;
   the guild opened with op 14) and keep-alive HTTP. For each rate of
   ``--rates``: ``--duration`` s of plain posts (``POST /channels/{id}/messages``)
   then ``--duration`` s of invocations (``POST /interactions``), spread over the
   users. A user measures its own: send -> MESSAGE_CREATE of its post, and send ->
   MESSAGE_CREATE of the bot's answer minus the bot's think time (every session in the
   channel gets both, as on Discord).

One JSON line per rate: p50/p99 of each path, the ratio of the p99s, what was sent and
answered, the server's CPU. The machine is shared (2 cores): the clients' CPU competes
with the server's, and a rate the clients cannot send shows as ``sent`` below target.

    .venv/bin/python -m loadtest.bench_interactions --rates 100 300 1000 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.gateway_load import seed_users, start_gateway_server, stop_gateway_server
from loadtest.ws_baseline.load import cpu_seconds, wait_for_quiet_host

USER_INTENTS = 1 | (1 << 9) | (1 << 15)  # GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT
BOT_INTENTS = 1  # GUILDS
TARGET_P99_MS = 50.0
SETTLE_S = 2.0


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def identify(http: aiohttp.ClientSession, url: str, token: str, intents: int,
                   guild_id: int | None = None) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{url}/?v=10&encoding=json", max_msg_size=0)
    await ws.receive(10)  # HELLO
    await ws.send_json({"op": 2, "d": {"token": token, "intents": intents,
                                       "properties": {"os": "l", "browser": "b", "device": "d"}}})
    while True:
        payload = json.loads((await ws.receive(10)).data)
        if payload.get("t") == "GUILD_CREATE":
            break
    if guild_id is not None:
        await ws.send_json({"op": 14, "d": {"guild_id": str(guild_id)}})
    return ws


async def heartbeat(ws: aiohttp.ClientWebSocketResponse) -> None:
    while not ws.closed:
        await asyncio.sleep(30)
        await ws.send_json({"op": 1, "d": None})


# -- the bot -----------------------------------------------------------------------------


def bot_process(gateway_url: str, rest_url: str, token: str, ready: Connection,
                stop: Connection) -> None:
    asyncio.run(_bot(gateway_url, rest_url, token, ready, stop))


async def _bot(gateway_url: str, rest_url: str, token: str, ready: Connection,
               stop: Connection) -> None:
    answered = 0
    failed: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:
        ws = await identify(http, gateway_url, token, BOT_INTENTS)
        beat = asyncio.create_task(heartbeat(ws))

        async def answer(received_ns: int, interaction: dict[str, Any]) -> None:
            nonlocal answered
            text = interaction["data"]["options"][0]["value"]
            think = time.monotonic_ns() - received_ns
            url = f"{rest_url}/interactions/{interaction['id']}/{interaction['token']}/callback"
            async with http.post(url, json={"type": 4, "data": {
                    "content": f"{text};{think}"}}) as resp:
                if resp.status == 204:
                    answered += 1
                else:  # 10062: the bot (starved of CPU) answered after the 3 s
                    code = str((await resp.json()).get("code"))
                    failed[code] = failed.get(code, 0) + 1

        ready.send("ready")
        pending: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()
        stopping = loop.run_in_executor(None, stop.recv)
        while not stopping.done():
            receive = asyncio.ensure_future(ws.receive())
            done, _ = await asyncio.wait({receive, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                break
            message = receive.result()
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            received = time.monotonic_ns()
            payload = json.loads(message.data)
            if payload.get("t") == "INTERACTION_CREATE":
                task = asyncio.create_task(answer(received, payload["d"]))
                pending.add(task)
                task.add_done_callback(pending.discard)
        await asyncio.gather(*pending, return_exceptions=True)
        beat.cancel()
        await ws.close()
    ready.send({"answered": answered, "failed": failed})


# -- the users ---------------------------------------------------------------------------


def user_process(index: int, gateway_url: str, rest_url: str, tokens: list[str],
                 plan: dict[str, Any], conn: Connection) -> None:
    asyncio.run(_users(index, gateway_url, rest_url, tokens, plan, conn))


async def _users(index: int, gateway_url: str, rest_url: str, tokens: list[str],
                 plan: dict[str, Any], conn: Connection) -> None:
    latencies: dict[str, list[float]] = {}
    answers: dict[str, dict[str, int]] = {}
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as http:
        sockets = [await identify(http, gateway_url, t, USER_INTENTS, plan["guild_id"])
                   for t in tokens]
        beats = [asyncio.create_task(heartbeat(ws)) for ws in sockets]

        async def read(user: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            mine = f"{index}:{user}:"
            async for message in ws:
                now = time.monotonic_ns()
                if message.type != aiohttp.WSMsgType.TEXT or '"MESSAGE_CREATE"' not in message.data:
                    continue
                data = json.loads(message.data)["d"]
                text = data.get("content", "")
                if not text.startswith("bench:"):
                    continue
                phase, _, rest = text[6:].partition(":")
                if not rest.startswith(mine):
                    continue
                sent, _, think = rest[len(mine):].partition(";")
                latency = now - int(sent) - (int(think) if think else 0)
                latencies.setdefault(phase, []).append(latency / 1e6)

        closed: list[str] = []

        async def reading(user: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            try:
                await read(user, ws)
            finally:  # a session the server closed (a slow consumer: the host is starved)
                closed.append(f"user {user}: {ws.close_code}")

        readers = [asyncio.create_task(reading(u, ws)) for u, ws in enumerate(sockets)]
        conn.send("ready")
        headers = [{"Authorization": f"Bot {t}"} for t in tokens]
        for phase, rate in plan["phases"]:
            assert conn.recv() == "go"
            count = answers.setdefault(phase, {})
            interval = len(tokens) / rate if rate else 0.0
            started = time.monotonic()
            sends: set[asyncio.Task] = set()

            async def send(user: int, n: int, phase: str = phase,
                           count: dict[str, int] = count) -> None:
                tag = f"bench:{phase}:{index}:{user}:{time.monotonic_ns()}"
                if phase.startswith("plain"):
                    url = f"{rest_url}/channels/{plan['channel_id']}/messages"
                    body: dict[str, Any] = {"content": tag}
                else:
                    url = f"{rest_url}/interactions"
                    body = {"type": 2, "application_id": plan["app_id"],
                            "guild_id": str(plan["guild_id"]),
                            "channel_id": str(plan["channel_id"]), "nonce": str(n),
                            "data": {"id": plan["command_id"], "name": "bench", "type": 1,
                                     "options": [{"type": 3, "name": "t", "value": tag}]}}
                try:
                    async with http.post(url, json=body, headers=headers[user]) as resp:
                        await resp.read()
                        key = str(resp.status)
                except aiohttp.ClientError as exc:
                    key = type(exc).__name__
                count[key] = count.get(key, 0) + 1

            n = 0
            # each user sends every ``interval`` s, the users spread over the interval
            while time.monotonic() - started < plan["duration"]:
                for user in range(len(tokens)):
                    due = started + n * interval + user * interval / len(tokens)
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    task = asyncio.create_task(send(user, n))
                    sends.add(task)
                    task.add_done_callback(sends.discard)
                n += 1
            await asyncio.gather(*sends, return_exceptions=True)
            await asyncio.sleep(SETTLE_S)
            conn.send({"phase": phase, "answers": count, "closed": list(closed),
                       "latencies": latencies.pop(phase, [])})
        for task in (*readers, *beats):
            task.cancel()
        for ws in sockets:
            await ws.close()


# -- the run -----------------------------------------------------------------------------


async def prepare(rest_url: str, bot_token: str, guild_id: int) -> tuple[str, str]:
    """The application id and the command id of ``/bench t:<text>``."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bot {bot_token}"}) as http:
        async with http.get(f"{rest_url}/users/@me") as resp:
            app_id = (await resp.json())["id"]
        async with http.put(f"{rest_url}/applications/{app_id}/guilds/{guild_id}/commands",
                            json=[{"name": "bench", "description": "bench", "options": [
                                {"type": 3, "name": "t", "description": "t",
                                 "required": True}]}]) as resp:
            commands = await resp.json()
            assert resp.status == 200, commands
    return app_id, commands[0]["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 300.0, 1000.0],
                        help="requests per second of each path, one step per rate")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per path")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--processes", type=int, default=2, help="user worker processes")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="seconds to wait at most for an idle host before measuring")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-interactions-") as directory:
        seeded = asyncio.run(seed_users(directory, args.users, args.users))
        server = start_gateway_server(seeded.db, Path(directory) / "server.log")
        try:
            result = run(args, seeded, server)
        finally:
            stop_gateway_server(server)
    for line in result:
        print(json.dumps(line), flush=True)


def run(args: argparse.Namespace, seeded: Any, server: Any) -> list[dict[str, Any]]:
    app_id, command_id = asyncio.run(prepare(server.rest_url, seeded.bot_token,
                                             seeded.guild_id))
    ctx = multiprocessing.get_context("spawn")
    bot_ready, bot_side = ctx.Pipe()
    bot_stop, bot_stop_side = ctx.Pipe()
    bot = ctx.Process(target=bot_process, args=(server.gateway_url, server.rest_url,
                                                seeded.bot_token, bot_side, bot_stop_side))
    bot.start()
    assert bot_ready.recv() == "ready"
    phases = [(f"{path}{int(rate)}", rate) for rate in args.rates
              for path in ("plain", "inter")]
    plan = {"guild_id": seeded.guild_id, "channel_id": seeded.channel_id, "app_id": app_id,
            "command_id": command_id, "duration": args.duration,
            "phases": [(name, rate / args.processes) for name, rate in phases]}
    workers, pipes = [], []
    share = [seeded.tokens[i::args.processes] for i in range(args.processes)]
    for index in range(args.processes):
        mine, theirs = ctx.Pipe()
        worker = ctx.Process(target=user_process, args=(
            index, server.gateway_url, server.rest_url, share[index], plan, theirs))
        worker.start()
        workers.append(worker)
        pipes.append(mine)
    for pipe in pipes:
        assert pipe.recv() == "ready"
    time.sleep(1.0)  # every op 14 reached the guild
    out = []
    steps: dict[str, dict[str, Any]] = {}
    busy = asyncio.run(wait_for_quiet_host(args.quiet_wait))
    for name, rate in phases:
        cpu_before = cpu_seconds(server.pid)
        bot_before = cpu_seconds(bot.pid)
        users_before = sum(cpu_seconds(w.pid) for w in workers)
        started = time.monotonic()
        for pipe in pipes:
            pipe.send("go")
        reports = [pipe.recv() for pipe in pipes]
        wall = time.monotonic() - started - SETTLE_S
        latencies = [v for r in reports for v in r["latencies"]]
        answers: dict[str, int] = {}
        for report in reports:
            for key, value in report["answers"].items():
                answers[key] = answers.get(key, 0) + value
        sent = sum(answers.values())
        steps[name] = {
            "rate": rate, "sent_per_s": round(sent / args.duration, 1), "answers": answers,
            "delivered": len(latencies),
            "sessions_closed": sum(len(r["closed"]) for r in reports),
            "closed_codes": sorted({c.rsplit(": ", 1)[1] for r in reports for c in r["closed"]}),
            "p50_ms": _round(percentile(latencies, 0.5)),
            "p99_ms": _round(percentile(latencies, 0.99)),
            "server_cpu": round((cpu_seconds(server.pid) - cpu_before) / max(wall, 0.001), 2),
            # the clients share the host's cores: a bot at ~1.0 is the limit, not greenroom
            "bot_cpu": round((cpu_seconds(bot.pid) - bot_before) / max(wall, 0.001), 2),
            "users_cpu": round((sum(cpu_seconds(w.pid) for w in workers) - users_before)
                               / max(wall, 0.001), 2)}
    for rate in args.rates:
        plain, inter = steps[f"plain{int(rate)}"], steps[f"inter{int(rate)}"]
        ratio = None
        if plain["p99_ms"] and inter["p99_ms"]:
            ratio = round(inter["p99_ms"] / plain["p99_ms"], 2)
        out.append({"bench": "interactions", "rate": rate, "interactions": inter,
                    "plain_messages": plain, "p99_ratio": ratio,
                    "target": f"interaction p99 <= {TARGET_P99_MS} ms at 1000/s",
                    "host_busy_before": round(busy, 2),
                    "settings": f"greenroom run --nodes 1 --no-rate-limits, SQLite as shipped (synchronous=FULL), "
                                f"{args.users} users in {args.processes} processes, "
                                f"cores={os.cpu_count()}"})
    bot_stop.send("stop")
    bot_report = bot_ready.recv()
    for line in out:
        line["bot"] = bot_report
    for worker in workers:
        worker.join(10)
    bot.join(10)
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


if __name__ == "__main__":
    sys.exit(main())
