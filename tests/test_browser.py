"""The dashboard in a real browser: Debian's Chromium, driven headless by Playwright.

Chromium comes from the system (``make test`` installs Debian's package when it
is missing); Playwright never downloads a browser. A screenshot of each run is
left in ``artifacts/`` for people to look at.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.processes import HubProcess
from tests.sse_client import open_stream

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000


def _chromium() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    assert path, "Debian's chromium is missing: run `make browser` (make test does)"
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


@pytest.fixture
async def hub_processes() -> AsyncIterator[list[HubProcess]]:
    started: list[HubProcess] = []
    yield started
    for process in started:
        process.stop()


async def _publish(url: str, data: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/events", json={"topic": "b", "data": data}) as response,
    ):
        assert response.status == 201
        return int((await response.json())["id"])


async def _shown(page: Page) -> list[tuple[int, str]]:
    items = await page.eval_on_selector_all(
        "li.event", "items => items.map(li => [li.dataset.id, li.querySelector('pre').textContent])"
    )
    return sorted((int(event_id), text) for event_id, text in items)


async def _wait_count(page: Page, count: int) -> None:
    # A locator, not wait_for_function: the page's CSP forbids evaluating strings.
    await expect(page.locator("li.event")).to_have_count(count, timeout=WAIT_MS)


async def test_dashboard_shows_live_events_and_publishes(
    browser: Browser, hub_processes: list[HubProcess], dsn: str
) -> None:
    hub = HubProcess(["--dsn", dsn])
    hub_processes.append(hub)
    await hub.wait_healthy()
    page = await browser.new_page()
    await page.goto(hub.url + "/?topic=b")
    await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
    ids = [await _publish(hub.url, f"live {n}") for n in range(3)]
    await _wait_count(page, 3)
    await page.fill("#pub-topic", "b")
    await page.fill("#pub-data", "sent from the form")
    await page.click("#send")
    await page.wait_for_selector("text=published as id", timeout=WAIT_MS)
    await _wait_count(page, 4)
    shown = await _shown(page)
    assert shown[:3] == [(i, f"live {n}") for n, i in enumerate(ids)]
    assert shown[3][1] == "sent from the form"
    assert await page.text_content("#last-id") == str(shown[3][0])
    commands = await page.text_content("#cmd-publish")
    assert commands is not None
    assert commands.startswith("curl -d topic=b -d data=hello " + hub.url + "/events")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


async def test_browser_reconnect_after_hub_restart_shows_every_event_once(
    browser: Browser, hub_processes: list[HubProcess], dsn: str
) -> None:
    first = HubProcess(["--dsn", dsn, "--retry-ms", "300"])
    hub_processes.append(first)
    await first.wait_healthy()
    page = await browser.new_page()
    await page.goto(first.url + "/?topic=b")
    await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
    expected = [f"before {n}" for n in range(3)]
    for data in expected:
        await _publish(first.url, data)
    await _wait_count(page, 3)

    first.signal(signal.SIGTERM)
    assert await first.wait_exit() == 0
    await page.wait_for_selector('#state[data-state="reconnecting"]', timeout=WAIT_MS)
    producer = await asyncpg.connect(dsn)
    try:
        for n in range(3):  # published while no hub runs: sequenced when one starts
            await producer.execute("SELECT sse_hub.publish('b', $1)", f"while down {n}")
            expected.append(f"while down {n}")
    finally:
        await producer.close()

    second = HubProcess(["--dsn", dsn, "--retry-ms", "300"], port=first.port)
    hub_processes.append(second)
    await second.wait_healthy()
    for n in range(3):
        await _publish(second.url, f"after {n}")
        expected.append(f"after {n}")
    await _wait_count(page, len(expected))
    await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
    shown = await _shown(page)
    assert [event_id for event_id, _ in shown] == list(range(1, len(expected) + 1))
    assert [text for _, text in shown] == expected
    notes = await page.eval_on_selector_all("li.note", "items => items.map(li => li.textContent)")
    assert any("reconnected; the browser resumed after id 3" in note for note in notes)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-after-restart.png"), full_page=True)


async def test_dashboard_retries_after_the_hub_refuses_the_stream(
    browser: Browser, hub_processes: list[HubProcess], dsn: str
) -> None:
    hub = HubProcess(["--dsn", dsn, "--max-streams", "1"])
    hub_processes.append(hub)
    await hub.wait_healthy()
    occupant = await open_stream(hub.port, "/events?topic=b")
    page = await browser.new_page()
    try:
        await occupant.started()
        await page.goto(hub.url + "/?topic=b")  # 503: EventSource itself gives up
        await page.wait_for_selector("text=the hub refused the stream", timeout=WAIT_MS)
    finally:
        occupant.close()
    await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
    await _publish(hub.url, "after the retry")
    await _wait_count(page, 1)
