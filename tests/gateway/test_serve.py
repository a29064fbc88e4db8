"""The one composition root (gateway/serve.py): settings as a node's plain options and
back, and a real start (storage, gateway, ingress) from them."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from gateway.ingress_client import IngressClient
from gateway.limits import UNLIMITED
from gateway.seed import seed
from gateway.serve import GatewaySettings, serve_from_options, start_gateway
from storage.schema import migrate
from storage.settings import StorageSettings
from storage.snowflake import SnowflakeGenerator
from tests.gateway.harness import run


def _settings(tmp_path: Path, **kwargs) -> GatewaySettings:
    storage = StorageSettings(sqlite_path=str(tmp_path / "greenroom.db"),
                              sqlite_synchronous="NORMAL")
    migrate(storage)
    return GatewaySettings(storage=storage, port=0, rest_port=0, ingress_port=0, **kwargs)


def test_settings_travel_as_plain_options_and_back(tmp_path: Path) -> None:
    settings = _settings(tmp_path, rate_limits=False, max_connections=7,
                         connections_per_ip=2.5, ingress=True, reuse_port=True)
    options = settings.options()
    assert options["rate_limits"] == "off" and isinstance(options["storage"], dict)
    assert GatewaySettings.from_options(options) == settings
    # what older launchers wrote (no ingress keys, no limits) still reads
    assert GatewaySettings.from_options({"port": 1, "rest_port": 2}, host="10.0.0.1") == \
        GatewaySettings(host="10.0.0.1", port=1, rest_port=2)


def test_a_node_starts_storage_gateway_and_ingress_from_its_options(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENROOM_INGRESS_SECRET", "s3cret")
    options = _settings(tmp_path, rate_limits=False, ingress=True).options()

    async def main() -> None:
        served = await serve_from_options(options, host="127.0.0.1", base=None,
                                          cluster=None, on_services_down=None)
        try:
            assert served.gateway.limits is UNLIMITED
            assert set(served.info) == {"gateway", "rest", "ingress"}
            seeded = await seed(served.storage, SnowflakeGenerator(1))
            async with IngressClient(served.info["ingress"], "s3cret") as client:
                posted = await client.post_system_message(seeded.channel_id, "hi")
            assert posted["content"] == "hi"
            async with aiohttp.ClientSession() as http, http.get(
                    f"{served.info['rest']}/users/@me",
                    headers={"Authorization": f"Bot {seeded.token}"}) as resp:
                assert resp.status == 200
        finally:
            await served.stop()

    run(main)


def test_the_ingress_without_a_secret_is_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GREENROOM_INGRESS_SECRET", raising=False)
    monkeypatch.delenv("GREENROOM_INGRESS_SECRET_FILE", raising=False)

    async def main() -> None:
        with pytest.raises(ValueError, match="GREENROOM_INGRESS_SECRET"):
            await start_gateway(_settings(tmp_path, ingress=True))

    run(main)
