"""The dashboard's picture in the docs, taken in Debian's Chromium::

    python -m tests.screenshot docs/images/dashboard.png

A throwaway PostgreSQL, a hub process, a page on ``orders/*`` and ``news`` at
1000 by 700 pixels, and a few seconds of orders (typed events) and news (untyped), so the
charts have a shape. Run it again when the page changes.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

import aiohttp
from playwright.async_api import ViewportSize, async_playwright, expect

from sse_hub.embedded_pg import EmbeddedPostgres
from tests.processes import HubProcess
from tests.test_browser import CHROMIUM_ARGS, WAIT_MS, chromium_path

SIZE: ViewportSize = {"width": 1000, "height": 700}
SECONDS_OF_TRAFFIC = 15


async def _traffic(url: str) -> None:
    order = 1040
    random.seed(7)  # the same picture each time, as far as timing allows
    async with aiohttp.ClientSession() as session:
        for second in range(SECONDS_OF_TRAFFIC):
            batch = []
            for _ in range(random.randint(1, 6)):
                order += 1
                data = {"order": order, "total": f"{random.randint(500, 9000) / 100:.2f}"}
                batch.append({"topic": f"orders/{order}", "event": "order.created", "data": data})
                if random.random() < 0.6:
                    paid = {"order": order, "method": random.choice(["card", "sepa"])}
                    batch.append({"topic": f"orders/{order}", "event": "order.paid", "data": paid})
            if second % 4 == 0:
                batch.append({"topic": "news", "data": f"deploy {second // 4 + 1} done"})
            async with session.post(url + "/events", json=batch) as response:
                assert response.status == 201, await response.text()
            await asyncio.sleep(1)  # pacing the traffic, not waiting for anything


async def take(path: Path) -> None:
    database = EmbeddedPostgres.throwaway()
    hub: HubProcess | None = None
    try:
        hub = HubProcess(["--dsn", await database.start()])
        await hub.wait_healthy()
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
            )
            page = await browser.new_page(viewport=SIZE)
            await page.goto(hub.url + "/?topic=orders/*&topic=news")
            await expect(page.locator("#state")).to_have_attribute("data-state", "open")
            await _traffic(hub.url)
            await expect(page.locator("#received td.count").first).not_to_have_text(
                "0", timeout=WAIT_MS
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(path))
            await browser.close()
    finally:
        if hub is not None:
            hub.stop()
        await database.remove()


if __name__ == "__main__":
    asyncio.run(take(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/dashboard.png")))
