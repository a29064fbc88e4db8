"""Regression tests for what the review of issue 12's finished features found (each
failed before its fix)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.gateway.harness import Running, run, running_gateway


async def _call(http: aiohttp.ClientSession, r: Running, method: str, path: str,
                token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {token or r.seeded.token}"}
    async with http.request(method, f"{r.gateway.rest_url}{path}", headers=headers,
                            **kwargs) as resp:
        body = await resp.read()
        return resp.status, json.loads(body) if body else None


def test_uploaded_html_and_svg_cannot_run_script_on_the_api_origin(tmp_path: Path) -> None:
    """Attachments are served from the REST origin without a token: a file that a
    browser would render as a page (HTML, SVG, or any declared type) must not run its
    script there (a stored XSS against whoever opens the link)."""
    async def main() -> None:
        async with running_gateway(tmp_path) as r, aiohttp.ClientSession() as http:
            form = aiohttp.FormData()
            form.add_field("payload_json", json.dumps({"content": "look"}),
                           content_type="application/json")
            script = b"<script>alert(document.domain)</script>"
            for n, (name, declared) in enumerate((("page.html", "text/html"),
                                                  ("pic.svg", "image/svg+xml"),
                                                  ("noext", "text/html"))):
                form.add_field(f"files[{n}]", script, filename=name, content_type=declared)
            status, message = await _call(http, r, "POST",
                                          f"/channels/{r.seeded.channel_id}/messages",
                                          data=form)
            assert status == 200, message
            for attachment in message["attachments"]:
                async with http.get(attachment["url"]) as resp:
                    assert resp.status == 200 and await resp.read() == script
                    assert resp.headers["X-Content-Type-Options"] == "nosniff"
                    policy = resp.headers["Content-Security-Policy"]
                    assert "sandbox" in policy and "default-src 'none'" in policy
            # the attachment object still says what the file is
            assert message["attachments"][0]["content_type"] == "text/html; charset=utf-8"

    run(main)
