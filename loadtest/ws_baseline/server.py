"""Bare broadcast servers: no actors, no storage, no protocol — the floor a gateway is
measured against.

Every library gets the same job on uvloop: clients connect to ``/``; whatever text
message arrives on ``/send`` goes, as the same bytes, to every connected client, using
the library's own fastest broadcast path (a plain loop of ``send`` where it has none).

Run one with ``python -m loadtest.ws_baseline --lib picows --port 0``; it prints
``LISTENING <port>`` once it accepts connections and serves until stdin closes or it is
terminated.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

LIBRARIES = ("picows", "picows-uvloop", "websockets", "picows-websockets", "aiohttp")

# serve(host, port) -> (bound port, stop coroutine)
Server = Callable[[str, int], Awaitable[tuple[int, Callable[[], Awaitable[None]]]]]


async def serve_picows(host: str, port: int, use_aiofastnet: bool | None = None,
                       compress: str | None = None):
    """picows 2.3 runs on aiofastnet's transports when that (a picows dependency) is
    installed; ``use_aiofastnet=False`` puts it on uvloop's own transports instead.
    ``compress``: every receiver gets its own stream of the gateway's transport
    compression, with the gateway's own compressor and settings
    (``gateway.protocol.compression``), so a compressed ratio is like for like."""
    from picows import WSListener, WSMsgType, WSTransport, ws_create_server

    receivers: set[WSTransport] = set()
    compressed: dict[WSTransport, Callable[[bytes], bytes]] = {}
    text, binary = WSMsgType.TEXT, WSMsgType.BINARY
    new_stream = _compressor_factory(compress)

    class Receiver(WSListener):
        def on_ws_connected(self, transport: WSTransport) -> None:
            if new_stream is None:
                receivers.add(transport)
            else:
                compressed[transport] = new_stream().compress

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            receivers.discard(transport)
            compressed.pop(transport, None)

    class Sender(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame) -> None:
            if frame.msg_type is text:
                payload = frame.get_payload_as_bytes()
                for receiver in receivers:
                    receiver.send(text, payload)
                for receiver, compress_frame in compressed.items():
                    receiver.send(binary, compress_frame(payload))

    def route(request):
        return Sender() if request.path == b"/send" else Receiver()

    server = await ws_create_server(
        route, host, port, websocket_handshake_timeout=30, use_aiofastnet=use_aiofastnet
    )
    bound = server.sockets[0].getsockname()[1]

    async def stop() -> None:
        server.close()

    return bound, stop


def _compressor_factory(compress: str | None) -> Callable[[], object] | None:
    if compress is None:
        return None
    from gateway.protocol.compression import ZlibStreamCompressor, ZstdStreamCompressor

    return {"zlib-stream": ZlibStreamCompressor, "zstd-stream": ZstdStreamCompressor}[compress]


def _websockets_like(serve, broadcast, closed_error: type[Exception]):
    async def run(host: str, port: int):
        receivers: set = set()

        async def handler(connection) -> None:
            if connection.request.path == "/send":
                try:
                    async for message in connection:
                        broadcast(receivers, message)
                except closed_error:
                    pass
                return
            receivers.add(connection)
            try:
                await connection.wait_closed()
            finally:
                receivers.discard(connection)

        server = await serve(handler, host, port, compression=None, max_queue=None)
        bound = next(iter(server.sockets)).getsockname()[1]

        async def stop() -> None:
            server.close()

        return bound, stop

    return run


async def serve_websockets(host: str, port: int):
    from websockets.asyncio.server import broadcast, serve
    from websockets.exceptions import ConnectionClosed

    return await _websockets_like(serve, broadcast, ConnectionClosed)(host, port)


async def serve_picows_uvloop(host: str, port: int):
    return await serve_picows(host, port, use_aiofastnet=False)


async def serve_picows_websockets(host: str, port: int):
    from picows.websockets.asyncio.server import broadcast, serve
    from picows.websockets.exceptions import ConnectionClosed

    return await _websockets_like(serve, broadcast, ConnectionClosed)(host, port)


async def serve_aiohttp(host: str, port: int):
    from aiohttp import WSMsgType, web

    receivers: set[web.WebSocketResponse] = set()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        if request.path == "/send":
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    for receiver in list(receivers):
                        try:
                            await receiver.send_str(message.data)
                        except ConnectionResetError:
                            receivers.discard(receiver)
            return ws
        receivers.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            receivers.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    app.router.add_get("/send", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]

    async def stop() -> None:
        await runner.cleanup()

    return bound, stop


SERVERS: dict[str, Server] = {
    "picows": serve_picows,
    "picows-uvloop": serve_picows_uvloop,
    "websockets": serve_websockets,
    "picows-websockets": serve_picows_websockets,
    "aiohttp": serve_aiohttp,
}


async def run_until_stdin_closes(library: str, host: str, port: int,
                                 compress: str | None = None) -> None:
    # A server still working through a backlog when its clients leave would log one
    # "write() called after connection lost" per dropped message.
    for name in ("asyncio", "aiofastnet"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if compress is not None and library != "picows":
        raise SystemExit("--compress is served by the picows baseline only")
    serve = SERVERS[library]
    bound, stop = await (serve(host, port, compress=compress) if compress else serve(host, port))
    print(f"LISTENING {bound}", flush=True)
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    def on_stdin() -> None:
        if not sys.stdin.buffer.read1(4096) and not closed.done():
            closed.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    try:
        await closed
    finally:
        loop.remove_reader(sys.stdin.fileno())
        await stop()
