"""The dashboard in a real browser: Debian's Chromium, driven headless by Playwright.

Chromium comes from the system (``make test`` installs Debian's package when it
is missing); Playwright never downloads a browser. A screenshot of each run is
left in ``artifacts/`` for people to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from sse_hub.dashboard import add_dashboard
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


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    assert path, "Debian's chromium is missing: run `make browser` (make test does)"
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


OpenPage = Callable[[str], Awaitable[Page]]


@pytest.fixture
async def open_page(browser: Browser) -> AsyncIterator[OpenPage]:
    """Pages of the dashboard; the test fails on an uncaught error or a CSP violation in any."""
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(message.text)

    async def open_(url: str) -> Page:
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
        page.on("console", console)
        await page.goto(url)
        return page

    yield open_
    assert problems == []


@pytest.fixture
async def hub_processes() -> AsyncIterator[list[HubProcess]]:
    started: list[HubProcess] = []
    yield started
    for process in started:
        process.stop()


StartHub = Callable[..., Awaitable[HubProcess]]


@pytest.fixture
def start_hub_process(hub_processes: list[HubProcess], dsn: str) -> StartHub:
    """Healthy hub processes on the test's database (``serve`` flags as arguments)."""

    async def start(*args: str, port: int | None = None) -> HubProcess:
        hub = HubProcess(["--dsn", dsn, *args], port=port)
        hub_processes.append(hub)
        await hub.wait_healthy()
        return hub

    return start


async def _open_dashboard(open_page: OpenPage, url: str) -> Page:
    """The dashboard at ``url``, once its stream is open."""
    page = await open_page(url)
    await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
    return page


async def _publish(url: str, data: str, event: str | None = None) -> int:
    body = {"topic": "b", "data": data} | ({"event": event} if event else {})
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/events", json=body) as response,
    ):
        assert response.status == 201
        return int((await response.json())["id"])


async def _shown(page: Page) -> list[tuple[int, str]]:
    items = await page.eval_on_selector_all(
        "li.event", "items => items.map(li => [li.dataset.id, li.querySelector('pre').textContent])"
    )
    return sorted((int(event_id), text) for event_id, text in items)


async def _types(page: Page) -> list[tuple[int, str]]:
    items = await page.eval_on_selector_all(
        "li.event",
        "items => items.map(li => [li.dataset.id, li.querySelector('.type').textContent])",
    )
    return sorted((int(event_id), text) for event_id, text in items)


async def _wait_count(page: Page, count: int) -> None:
    # A locator, not wait_for_function: the page's CSP forbids evaluating strings.
    await expect(page.locator("li.event")).to_have_count(count, timeout=WAIT_MS)


async def test_dashboard_shows_live_events_and_publishes(
    open_page: OpenPage, start_hub_process: StartHub
) -> None:
    hub = await start_hub_process()
    page = await _open_dashboard(open_page, hub.url + "/?topic=b")
    ids = [await _publish(hub.url, f"live {n}") for n in range(3)]
    await _wait_count(page, 3)
    await page.fill("#pub-topic", "b")
    await page.fill("#pub-event", "note.sent")
    await page.fill("#pub-data", "sent from the form")
    await page.click("#send")
    await page.wait_for_selector("text=published as id", timeout=WAIT_MS)
    await _wait_count(page, 4)
    shown = await _shown(page)
    assert shown[:3] == [(i, f"live {n}") for n, i in enumerate(ids)]
    assert shown[3][1] == "sent from the form"
    assert (await _types(page))[3] == (shown[3][0], "note.sent")
    assert await page.text_content("#last-id") == str(shown[3][0])
    commands = await page.text_content("#cmd-publish")
    assert commands is not None
    assert commands.startswith("curl -d topic=b -d data=hello " + hub.url + "/events")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


async def test_dashboard_shows_every_type_and_filters_by_type(
    open_page: OpenPage, start_hub_process: StartHub
) -> None:
    hub = await start_hub_process()
    page = await _open_dashboard(open_page, hub.url + "/?topic=b")
    published = [
        (await _publish(hub.url, "plain 0"), "message"),
        (await _publish(hub.url, '{"order": 7}', event="order.paid"), "order.paid"),
        (await _publish(hub.url, "plain 1"), "message"),
        (await _publish(hub.url, '{"order": 8}', event="order.paid"), "order.paid"),
        (await _publish(hub.url, "gone", event="order.shipped"), "order.shipped"),
    ]
    await _wait_count(page, len(published))
    assert await _types(page) == published
    await expect(page.locator("#subscription")).to_have_text("b")

    await page.select_option("#type-filter", "order.paid")
    visible = page.locator("li.event:visible")
    await expect(visible).to_have_count(2, timeout=WAIT_MS)
    await expect(visible.locator("pre")).to_have_text(['{"order": 8}', '{"order": 7}'])
    await _publish(hub.url, "plain 2")  # arrives while the filter hides its type
    await _wait_count(page, len(published) + 1)
    await expect(visible).to_have_count(2)
    await page.select_option("#type-filter", "message")
    await expect(visible.locator(".type")).to_have_text(["message"] * 3)
    await page.select_option("#type-filter", "")
    await expect(visible).to_have_count(len(published) + 1)

    counts = page.locator("#received tr[data-type] td.count")
    rows = page.locator("#received tr[data-type] td.type")
    await expect(rows).to_have_text(
        ["every type", "message", "order.paid", "order.shipped"], timeout=WAIT_MS
    )
    await expect(counts).to_have_text(["6", "3", "2", "1"], timeout=WAIT_MS)


async def test_dashboard_charts_follow_the_hubs_counters(
    open_page: OpenPage, start_hub_process: StartHub
) -> None:
    hub = await start_hub_process()
    page = await _open_dashboard(open_page, hub.url + "/?topic=b")
    streams = page.locator("#chart-streams")
    await expect(streams).to_have_attribute("data-last", "1", timeout=WAIT_MS)  # this page
    events, sent = page.locator("#chart-events"), page.locator("#chart-bytes")
    await expect(events).to_have_attribute("data-total", "0", timeout=WAIT_MS)
    for n in range(5):
        await _publish(hub.url, f"event {n}")
    await _wait_count(page, 5)
    await expect(events).to_have_attribute("data-total", "5", timeout=WAIT_MS)
    nonzero = re.compile(r"(^|,)(0\.\d*[1-9]|[1-9])")
    await expect(events).to_have_attribute("data-values", nonzero, timeout=WAIT_MS)
    await expect(sent).to_have_attribute("data-values", nonzero, timeout=WAIT_MS)
    await expect(sent).to_have_attribute("data-total", re.compile(r"^[1-9]\d*$"))
    await expect(page.locator("#chart-lag")).to_have_attribute(
        "data-last", re.compile(r"^\d"), timeout=WAIT_MS
    )
    await expect(page.locator("#hub-source")).to_contain_text("from /metrics")
    values = await events.get_attribute("data-values")
    assert values is not None
    await expect(events).not_to_have_attribute("data-values", values, timeout=WAIT_MS)


async def test_dashboard_says_when_metrics_need_a_token(
    open_page: OpenPage, start_hub_process: StartHub
) -> None:
    hub = await start_hub_process("--metrics-token", "s3cret-metrics-token")
    page = await open_page(hub.url + "/?topic=b")
    await expect(page.locator("#hub-source")).to_contain_text("--metrics-token", timeout=WAIT_MS)
    # what /healthz tells still shows
    await expect(page.locator("#chart-streams")).to_have_attribute(
        "data-last", "1", timeout=WAIT_MS
    )
    await expect(page.locator("#chart-events")).to_have_attribute("data-last", "")


async def test_browser_reconnect_after_hub_restart_shows_every_event_once(
    open_page: OpenPage, start_hub_process: StartHub, dsn: str
) -> None:
    first = await start_hub_process("--retry-ms", "300")
    page = await _open_dashboard(open_page, first.url + "/?topic=b")
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
            await producer.execute(
                "SELECT sse_hub.publish('b', $1, $2)", f"while down {n}", "down" if n else None
            )
            expected.append(f"while down {n}")
    finally:
        await producer.close()

    second = await start_hub_process("--retry-ms", "300", port=first.port)
    for n in range(3):
        await _publish(second.url, f"after {n}", event="after" if n == 1 else None)
        expected.append(f"after {n}")
    await _wait_count(page, len(expected))
    await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
    shown = await _shown(page)
    assert [event_id for event_id, _ in shown] == list(range(1, len(expected) + 1))
    assert [text for _, text in shown] == expected
    types = [event_type for _, event_type in await _types(page)]
    assert types == ["message"] * 4 + ["down"] * 2 + ["message", "after", "message"]
    notes = await page.eval_on_selector_all("li.note", "items => items.map(li => li.textContent)")
    assert any("reconnected; resumed after id 3" in note for note in notes)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-after-restart.png"), full_page=True)


async def test_last_event_id_in_the_page_url_sets_the_resume_point(
    open_page: OpenPage, start_hub_process: StartHub
) -> None:
    hub = await start_hub_process()
    ids = [await _publish(hub.url, f"stored {n}") for n in range(4)]
    pages = []
    for spelling, after in (("lastEventID", 2), ("lastEventId", 1), ("last_event_id", 3)):
        page = await open_page(f"{hub.url}/?topic=b&{spelling}={ids[after - 1]}")
        await expect(page.locator("#resume")).to_have_value(str(ids[after - 1]))
        await _wait_count(page, len(ids) - after)
        pages.append((page, after))
    for page, _ in pages:
        await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
    ids.append(await _publish(hub.url, "live"))
    for page, after in pages:
        await _wait_count(page, len(ids) - after)
        assert [event_id for event_id, _ in await _shown(page)] == ids[after:]


async def test_dashboard_retries_after_the_hub_refuses_the_stream(
    open_page: OpenPage, start_hub_process: StartHub
) -> None:
    hub = await start_hub_process("--max-streams", "1")
    occupant = await open_stream(hub.port, "/events?topic=b")
    try:
        await occupant.started()
        page = await open_page(hub.url + "/?topic=b")  # 503, with Retry-After
        await page.wait_for_selector("text=the hub refused the stream", timeout=WAIT_MS)
    finally:
        occupant.close()
    await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
    await _publish(hub.url, "after the retry")
    await _wait_count(page, 1)


async def test_dashboard_stops_and_says_why_on_a_refusal(
    open_page: OpenPage, start_hub_process: StartHub
) -> None:
    hub = await start_hub_process()
    page = await open_page(hub.url + "/?topic=b&lastEventID=soon")
    await expect(page.locator("#state")).to_have_attribute("data-state", "closed", timeout=WAIT_MS)
    await expect(page.locator("li.note").first).to_contain_text("stopped: the hub answered 400")


# The page's stream parser against the WHATWG rules, with each case fed whole and
# one byte at a time (a CRLF or a UTF-8 sequence split across reads).
PARSER_CASES: list[tuple[str, list[tuple[str, str, str]], list[int]]] = [
    ("data: a\r\ndata: b\rdata: c\n\n", [("message", "a\nb\nc", "")], []),
    ("data: x\r\ndata: y\r\n\r\n", [("message", "x\ny", "")], []),
    ("data: x\r\rdata: y\r\r", [("message", "x", ""), ("message", "y", "")], []),
    (
        "id: 7\nevent: order.paid\ndata: {}\n\ndata: no id\n\n",
        [("order.paid", "{}", "7"), ("message", "no id", "7")],
        [],
    ),
    (": comment\nretry: 1500\nretry: 15x\nretry\ndata: r\n\n", [("message", "r", "")], [1500]),
    ("data\n\ndata:\n\n", [("message", "", ""), ("message", "", "")], []),
    ("data:  two\ndata:three\n\n", [("message", " two\nthree", "")], []),
    ("event: lonely\n\ndata: y\n\n", [("message", "y", "")], []),
    (
        "id: 3\ndata: a\n\nid: 4\0\ndata: b\n\nid\ndata: c\n\n",
        [("message", "a", "3"), ("message", "b", "3"), ("message", "c", "")],
        [],
    ),
    ("id: 9\n\ndata: after\n\n", [("message", "after", "9")], []),
    ("\ufeffdata: bom\n\n\ufeffdata: not a bom\n\n", [("message", "bom", "")], []),
    ("data: é😀\n\n", [("message", "é😀", "")], []),
    ("foo: bar\ndata: z\n\n\n\ndata: never ended", [("message", "z", "")], []),
]

_RUN_PARSER = """async (cases) => {
  const { EventStreamParser } = await import("/static/sse.js");
  const run = (text, oneByteAtATime) => {
    const events = [], retries = [];
    const parser = new EventStreamParser({
      onEvent: (e) => events.push([e.type, e.data, e.lastEventId]),
      onRetry: (ms) => retries.push(ms),
    });
    const bytes = new TextEncoder().encode(text);
    if (oneByteAtATime) bytes.forEach((b) => parser.feed(Uint8Array.of(b)));
    else parser.feed(bytes);
    return [events, retries];
  };
  const reconnected = [];
  const parser = new EventStreamParser({ lastEventId: "41", onEvent: (e) => reconnected.push(e) });
  const before = parser.lastEventId;
  parser.feedText("data: half read\\n");
  parser.restart();  // a new connection: the half-read event is gone, the id is kept
  parser.feedText("data: next\\n\\nid: 50\\n\\n");  // an id alone still moves the resume point
  return {
    cases: cases.map((text) => [run(text, false), run(text, true)]),
    reconnected: [before, ...reconnected.map((e) => [e.data, e.lastEventId]), parser.lastEventId],
  };
}"""


async def test_the_page_parses_streams_by_the_spec(browser: Browser) -> None:
    app = web.Application()
    add_dashboard(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        page = await browser.new_page()
        await page.goto(str(server.make_url("/static/dashboard.css")))
        result = await page.evaluate(_RUN_PARSER, [text for text, _, _ in PARSER_CASES])
    finally:
        await server.close()
    for (text, events, retries), (whole, byte_by_byte) in zip(
        PARSER_CASES, result["cases"], strict=True
    ):
        expected = [[list(event) for event in events], retries]
        assert whole == expected, text
        assert byte_by_byte == expected, text
    assert result["reconnected"] == ["41", ["next", "41"], "50"]
