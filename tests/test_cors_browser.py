"""CORS in a real browser: ``examples/dashboard.html`` served from another origin."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect

from tests.processes import HubProcess
from tests.test_browser import WAIT_MS, browser, hub_processes

__all__ = ["browser", "hub_processes"]  # fixtures, shared with the dashboard tests

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def test_a_page_on_another_origin_streams_and_publishes(
    browser: Browser, hub_processes: list[HubProcess], dsn: str
) -> None:
    pages = web.Application()
    pages.router.add_static("/", EXAMPLES)
    site = TestServer(pages, host="127.0.0.1")
    await site.start_server()
    try:
        origin = f"http://127.0.0.1:{site.port}"
        hub = HubProcess(["--dsn", dsn, "--cors-origin", origin])
        hub_processes.append(hub)
        await hub.wait_healthy()
        page = await browser.new_page()
        await page.goto(origin + "/dashboard.html")
        await page.fill("#hub", hub.url)
        await page.click("button[type=submit]")
        await expect(page.locator("#state")).to_have_text("open", timeout=WAIT_MS)
        # a JSON POST from another origin goes through a preflight first
        await page.click("#publish")
        await expect(page.locator("#result")).to_have_text("published as id 1", timeout=WAIT_MS)
        await expect(page.locator("#events li")).to_have_text(
            ["#1 hello from another origin"], timeout=WAIT_MS
        )
        # an origin the hub does not allow gets nothing
        async with (
            aiohttp.ClientSession() as session,
            session.options(
                hub.url + "/events",
                headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
            ) as response,
        ):
            assert response.status == 403
    finally:
        await site.close()
