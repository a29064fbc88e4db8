"""One composition root for a node's gateway: its storage, the gateway (WebSocket +
REST) and the internal ingress, from one typed settings object.

``greenroom run``'s node processes (``cluster/node.py``, through its ``serve`` hook)
and ``greenroom gateway`` (``gateway/standalone.py``) both start here, so the two cannot
drift apart again (they did: the ingress secret reached one and not the other). The
settings cross into a node process as plain options (``GatewaySettings.options``), never
with a secret: the ingress secret is read from the process's environment
(``gateway.ingress.secret_from_environment``), because Thespian logs the messages it
retries and a node's config is one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage import make_storage
from storage.settings import StorageSettings

if TYPE_CHECKING:
    from gateway.server import Gateway
    from storage.base import Storage

__all__ = ["FLAGS", "GatewaySettings", "Served", "add_arguments", "serve_from_options",
           "start_gateway"]

log = logging.getLogger("greenroom.gateway")

#: Seconds a stopping node gives its storage actor to finish what was queued.
DRAIN_S = 0.1


@dataclass(frozen=True)
class GatewaySettings:
    """What a node serves. ``rate_limits`` False: none at all (load tests);
    ``connections_per_ip``: new gateway connections per second per client address
    (bursts of twice that); ``max_connections``: the node's cap; ``ingress``: serve the
    internal ingress on ``ingress_host:ingress_port`` (loopback by default), its secret
    from the environment; ``reuse_port``: SO_REUSEPORT on every listener, so the
    host's nodes share the ports."""

    storage: StorageSettings = dataclasses.field(default_factory=StorageSettings)
    host: str = "127.0.0.1"
    port: int = 8080
    rest_port: int = 8081
    reuse_port: bool = False
    rate_limits: bool = True
    max_connections: int | None = None
    connections_per_ip: float | None = None
    ingress: bool = False
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8082

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, host: str = "127.0.0.1"
                     ) -> GatewaySettings:
        """From a node's ``settings["gateway"]`` (plain values, as ``greenroom run``
        and the launcher write them; ``host``: the node's when the options name none)."""
        return cls(
            storage=StorageSettings(**options.get("storage", {})),
            host=options.get("host", host),
            port=int(options.get("port", 8080)),
            rest_port=int(options.get("rest_port", 8081)),
            reuse_port=bool(options.get("reuse_port", False)),
            rate_limits=options.get("rate_limits") != "off",
            max_connections=int(options["max_connections"])
            if options.get("max_connections") else None,
            connections_per_ip=float(options["connections_per_ip"])
            if options.get("connections_per_ip") else None,
            ingress=bool(options.get("ingress", False)),
            ingress_host=options.get("ingress_host", "127.0.0.1"),
            ingress_port=int(options.get("ingress_port", 8082)),
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace, storage: StorageSettings,
                  **changes: Any) -> GatewaySettings:
        """From the flags ``add_arguments`` declared (the fields among them that the
        command has), then ``changes``."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                 if f.name in FLAGS and hasattr(args, f.name)}
        return cls(storage=storage, **{**given, **changes})

    def options(self) -> dict[str, Any]:
        """The inverse of ``from_options``: plain values for a node's config."""
        out = dataclasses.asdict(self)
        out["rate_limits"] = "on" if self.rate_limits else "off"
        return out


# What ``greenroom run`` and ``greenroom gateway`` serve, declared once (as
# storage/settings.py declares the storage flags): name (GatewaySettings' field, or the
# operator port's) -> (environment variable, flag, type, default, help). A help says what
# the flag means for one process; ``add_arguments``' notes add what it means for a tree.
def port(text: str) -> int:
    """A TCP port (0: any free one), as an argparse type: a bad one is a usage error."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a port (0..65535)")
    return value


def port_or_off(text: str) -> int:
    """A port, or -1 for "do not serve it"."""
    return -1 if int(text) == -1 else port(text)


FLAGS: dict[str, tuple[str, str, Callable[[str], Any], str, str]] = {
    "host": ("GREENROOM_HOST", "--host", str, "127.0.0.1",
             "interface that every listener binds (default loopback)"),
    "port": ("GREENROOM_GATEWAY_PORT", "--port", port, "8080",
             "gateway WebSocket port (default 8080; 0: any free)"),
    "rest_port": ("GREENROOM_REST_PORT", "--rest-port", port, "8081",
                  "REST API port (default 8081; 0: any free)"),
    "max_connections": ("GREENROOM_MAX_CONNECTIONS", "--max-connections", int, "50000",
                        "open gateway connections per node; past it the WebSocket "
                        "handshake is answered 503 (default 50000)"),
    "connections_per_ip": ("GREENROOM_CONNECTIONS_PER_IP", "--connections-per-ip", float, "60",
                           "new gateway connections per second per client address (IPv6: "
                           "per /64), bursts of twice that; over it a connection is closed "
                           "4008 before HELLO (default 60)"),
    "operator_port": ("GREENROOM_OPERATOR_PORT", "--operator-port", port_or_off, "9464",
                      "operator port: /metrics (Prometheus), /healthz, /readyz "
                      "(default 9464; 0: any free, printed; -1: none)"),
    "operator_host": ("GREENROOM_OPERATOR_HOST", "--operator-host", str, "127.0.0.1",
                      "interface of the operator port (default loopback: what it shows is "
                      "for the operator)"),
    "ingress_port": ("GREENROOM_INGRESS_PORT", "--ingress-port", port, "8082",
                     "internal ingress port (default 8082; 0: any free); served only when "
                     "GREENROOM_INGRESS_SECRET or GREENROOM_INGRESS_SECRET_FILE is set"),
    "ingress_host": ("GREENROOM_INGRESS_HOST", "--ingress-host", str, "127.0.0.1",
                     "interface of the internal ingress (default loopback, whatever --host "
                     "is)"),
}


def add_arguments(parser: argparse.ArgumentParser, names: Iterable[str], *,
                  environment: bool = True, notes: Mapping[str, str] | None = None) -> None:
    """Add these ``FLAGS`` to a parser, each with its default from its environment
    variable (named in the help; ``environment`` False: the built-in default only) and
    its ``notes`` after its help."""
    for name in names:
        env, flag, kind, default, text = FLAGS[name]
        note = (notes or {}).get(name)
        try:
            value = kind(os.environ.get(env, default) if environment else default)
        except ValueError as exc:  # one line naming the variable, not a traceback
            parser.error(f"${env}: {exc}")
        parser.add_argument(
            flag, dest=name, type=kind, default=value,
            help=text + (f"; {note}" if note else "") + (f" [${env}]" if environment else ""))


@dataclass
class Served:
    """A running gateway and the storage it owns; ``stop`` releases both."""

    gateway: Gateway
    storage: Storage

    @property
    def info(self) -> dict[str, Any]:
        """The URLs it serves (a node reports them in ``NodeUp.info``)."""
        info = {"gateway": self.gateway.gateway_url, "rest": self.gateway.rest_url}
        if self.gateway.ingress_secret:
            info["ingress"] = self.gateway.ingress_url
        return info

    async def stop(self) -> None:
        try:
            await self.gateway.stop()
            await asyncio.sleep(DRAIN_S)  # let the storage actor finish what was queued
        finally:
            await self.storage.close()


def _gateway_kwargs(settings: GatewaySettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if not settings.rate_limits:  # load tests only
        from gateway.limits import UNLIMITED

        kwargs["limits"] = UNLIMITED
    elif settings.connections_per_ip:
        from gateway.limits import RateLimits

        rate = settings.connections_per_ip
        kwargs["limits"] = RateLimits(connections_per_ip_per_s=rate,
                                      connections_per_ip_burst=max(1, int(2 * rate)))
    if settings.max_connections:
        kwargs["max_connections"] = settings.max_connections
    if settings.ingress:
        from gateway.ingress import secret_from_environment

        secret = secret_from_environment()
        if secret is None:
            raise ValueError("the ingress is on but neither GREENROOM_INGRESS_SECRET nor "
                             "GREENROOM_INGRESS_SECRET_FILE is set in this process")
        kwargs.update(ingress_secret=secret, ingress_host=settings.ingress_host,
                      ingress_port=settings.ingress_port)
    return kwargs


async def start_gateway(settings: GatewaySettings, *, base: Any = None, cluster: Any = None,
                        on_services_down: Callable[[Any], None] | None = None) -> Served:
    """Open the storage and start the gateway on ``base`` (a node's runtime; None: one
    of its own). The schema is migrated by whoever starts the nodes. ``cluster``: the
    node's ``ClusterView`` (guilds placed over the nodes); ``on_services_down``: what to
    do when the node's services give up (OTP's escalation)."""
    from gateway.server import Gateway

    storage = make_storage(settings.storage)
    await storage.open()
    try:
        gateway = Gateway(storage, host=settings.host, port=settings.port,
                          rest_port=settings.rest_port, reuse_port=settings.reuse_port,
                          cluster=cluster, **_gateway_kwargs(settings))
        gateway.on_services_down = on_services_down
        try:
            await gateway.start(base=base)
        except BaseException:
            with contextlib.suppress(Exception):
                await gateway.stop()
            raise
    except BaseException:
        await storage.close()
        raise
    return Served(gateway, storage)


async def serve_from_options(options: Mapping[str, Any], *, host: str, base: Any,
                             cluster: Any, on_services_down: Any) -> Served:
    """A node's ``serve`` hook (``cluster/node.py``): ``start_gateway`` from the plain
    options of its config."""
    return await start_gateway(GatewaySettings.from_options(options, host=host), base=base,
                               cluster=cluster, on_services_down=on_services_down)
