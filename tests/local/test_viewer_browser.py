"""The viewer in a real headless Chromium: traces table, search, trace tree and timeline, dashboard.

Needs Debian's `chromium` and `chromium-driver` (CI installs them); skipped with a reason when no
Chromium binary is found. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("selenium")

from posthog_llm import EventStore  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from .conftest import XSS  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _find(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def browser(tmp_path, monkeypatch) -> Iterator[webdriver.Chrome]:
    binary = _find("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    driver_path = _find("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no Chromium found (install it: apt-get install -y chromium chromium-driver)")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not try to download
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, timeout: float = 15):
    # The viewer re-renders live while events arrive: an element read mid-refresh goes stale.
    return WebDriverWait(
        driver, timeout, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition)


def png_pixels(path: str) -> tuple[int, int, list[bytes]]:
    """A tiny PNG reader (8-bit RGB/RGBA, no interlace): width, height and the pixel rows."""
    with open(path, "rb") as fh:
        data = fh.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert depth == 8 and color in (2, 6) and interlace == 0
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            up_left = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        previous = line
    return (
        width,
        height,
        [bytes(r) for r in rows]
        if bpp == 3
        else [b"".join(r[i : i + 3] for i in range(0, len(r), 4)) for r in rows],
    )


def assert_not_blank(path: str) -> None:
    width, height, rows = png_pixels(path)
    assert width >= 800 and height >= 600
    counts: dict[bytes, int] = {}
    for row in rows[::3]:
        for x in range(0, width * 3, 9):
            pixel = row[x : x + 3]
            counts[pixel] = counts.get(pixel, 0) + 1
    total = sum(counts.values())
    # A blank or error page has a handful of colours; the viewer has text, badges and bars.
    assert len(counts) > 40, f"only {len(counts)} colours"
    assert max(counts.values()) / total < 0.95, "one colour covers almost the whole page"


def severe_console_messages(driver) -> list[str]:
    # CSP violations and script errors show up here as SEVERE.
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "favicon" not in entry["message"]
    ]


def test_viewer_lists_traces_and_shows_a_trace_tree(browser, server, sample_traces, tmp_path):
    browser.get(server.url + "/")
    rows = wait(
        browser,
        lambda d: (
            (r := d.find_elements(By.CSS_SELECTOR, "#traces-table tbody tr")) and len(r) == 3 and r
        ),
    )
    texts = [r.text for r in rows]
    assert "support-chat" in texts[2] and "user_42" in texts[2]
    assert "gpt-4o-mini-2024-07-18" in texts[2]
    assert "$0.0000422" in texts[2]  # estimated cost, three significant digits
    assert rows[1].find_elements(By.CSS_SELECTOR, "td")[-1].text == "1"  # one error
    # Hostile text is shown as text, never run.
    assert XSS in texts[0]
    assert browser.execute_script("return window.__xss") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "#traces-table img, #traces-table script")

    search = browser.find_element(By.ID, "search")
    search.send_keys("user_7")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#traces-table tbody tr")) == 1)
    assert "trace-error-2" in browser.find_element(By.ID, "traces-table").text
    assert "search=user_7" in browser.current_url
    search.clear()
    search.send_keys("trace-chat")
    wait(browser, lambda d: "support-chat" in d.find_element(By.ID, "traces-body").text)

    browser.find_element(By.LINK_TEXT, "support-chat").click()
    tree = wait(browser, ec.presence_of_element_located((By.ID, "trace-tree")))
    assert browser.current_url.endswith("/trace/trace-chat-1")
    kinds = [
        r.get_attribute("data-kind")
        for r in tree.find_elements(By.CSS_SELECTOR, ".tree-row[data-kind]")
    ]
    assert kinds == ["trace", "span", "embedding", "generation"]
    generation = tree.find_element(By.CSS_SELECTOR, ".tree-row[data-kind='generation']")
    assert "ChatOpenAI" in generation.text
    # The generation is selected first: its messages, output and tool call are shown.
    detail = browser.find_element(By.ID, "detail")
    wait(browser, lambda d: "How do hedgehogs sleep?" in detail.text)
    assert "Curled up in a ball" in detail.text and "lookup" in detail.text
    assert "gpt-4o-mini prices" in detail.text
    # The timeline: bars have a width, and the embedding sits inside its parent span.
    boxes = browser.execute_script(
        "return [...document.querySelectorAll('.tree-row[data-kind] .bar')]"
        ".map(b => { const r = b.getBoundingClientRect(); return [r.left, r.width]; })"
    )
    assert all(width > 0 for _, width in boxes)
    (trace_left, trace_width), (span_left, span_width), (emb_left, _), (gen_left, gen_width) = boxes
    assert trace_left <= span_left <= emb_left and gen_width > span_width
    assert gen_left + gen_width <= trace_left + trace_width + 1
    # Clicking another row shows that node.
    tree.find_element(By.CSS_SELECTOR, ".tree-row[data-kind='span']").click()
    wait(
        browser, lambda d: "Hedgehogs hibernate in winter." in d.find_element(By.ID, "detail").text
    )

    shot = str(tmp_path / "trace.png")
    browser.save_screenshot(shot)
    assert_not_blank(shot)
    if os.environ.get("POSTHOG_LLM_SCREENSHOTS"):
        shutil.copy(shot, os.path.join(os.environ["POSTHOG_LLM_SCREENSHOTS"], "trace.png"))
    assert severe_console_messages(browser) == []


def test_viewer_trace_with_hostile_content_and_the_dashboard(
    browser, server, sample_traces, tmp_path
):
    browser.get(server.url + "/trace/trace-xss-3")
    detail = wait(browser, ec.presence_of_element_located((By.ID, "detail")))
    wait(browser, lambda d: XSS in detail.text)
    assert browser.execute_script("return window.__xss") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script")

    browser.find_element(By.ID, "nav-dashboard").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".chart-svg")) == 8)
    captions = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "figcaption")]
    assert "Errors by model" in captions and "Estimated cost over time" in captions
    per_model = browser.find_element(By.ID, "per-model").text
    errors_by_model = per_model.split("Errors by model")[1].split()
    assert errors_by_model[errors_by_model.index("claude-3-5-sonnet-202…") + 1] == "1"
    table = browser.find_element(By.ID, "models-table")
    assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == 4
    assert "claude-3-5-sonnet-20241022" in table.text
    # Every chart drew something: lines/dots for latency, bars for tokens and cost.
    marks = browser.execute_script(
        "return [...document.querySelectorAll('.chart-svg')]"
        ".map(s => s.querySelectorAll('circle, rect, polyline').length)"
    )
    assert all(n > 0 for n in marks), marks
    shot = str(tmp_path / "dashboard.png")
    browser.save_screenshot(shot)
    assert_not_blank(shot)
    if os.environ.get("POSTHOG_LLM_SCREENSHOTS"):
        shutil.copy(shot, os.path.join(os.environ["POSTHOG_LLM_SCREENSHOTS"], "dashboard.png"))

    browser.find_element(By.ID, "nav-events").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#events-table tbody tr")) == 6)
    browser.back()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".chart-svg")) == 8)
    assert severe_console_messages(browser) == []


def _posthog_js() -> str | None:
    """posthog-js's browser bundle from npm (`npm install -g posthog-js`), if installed."""
    candidates = [os.environ.get("POSTHOG_JS_BUNDLE", "")]
    npm = shutil.which("npm")
    if npm:
        try:
            root = subprocess.run(
                [npm, "root", "-g"], capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = ""
        candidates.append(os.path.join(root, "posthog-js", "dist", "array.full.js"))
    candidates.append(os.path.join(ROOT, "node_modules", "posthog-js", "dist", "array.full.js"))
    return next((c for c in candidates if c and os.path.isfile(c)), None)


@contextlib.contextmanager
def web_app(collector_url: str, bundle: str) -> Iterator[str]:
    """A page on another origin that loads posthog-js with api_host pointed at the collector."""
    with open(bundle, "rb") as fh:
        script = fh.read()
    page = f"""<!doctype html><html><body><p id="status">loading</p>
<script src="/posthog.js"></script>
<script>
posthog.init("phc_js_test", {{
  api_host: {json.dumps(collector_url)},
  autocapture: false, capture_pageview: false, capture_pageleave: false,
  disable_session_recording: true, persistence: "memory", request_batching: false,
  opt_out_useragent_filter: true  // headless Chromium looks like a bot to posthog-js
}});
posthog.capture("$ai_generation", {{
  "$ai_trace_id": "js-trace", "$ai_model": "gpt-4o-mini", "$ai_input_tokens": 3,
  "$ai_output_tokens": 2, "$ai_input": [{{"role": "user", "content": "hi from the browser"}}]
}});
document.getElementById("status").textContent = "sent";
</script></body></html>""".encode()

    class Page(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body, kind = (
                (script, "text/javascript") if self.path == "/posthog.js" else (page, "text/html")
            )
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # "localhost", not 127.0.0.1: a different origin from the collector, as in real apps.
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_posthog_js_in_the_browser_delivers_to_the_collector(browser, server, db_path, server_log):
    bundle = _posthog_js()
    if bundle is None:
        pytest.skip("posthog-js is not installed (npm install -g posthog-js)")
    with web_app(server.url, bundle) as url:
        browser.get(url)
        wait(browser, lambda d: d.find_element(By.ID, "status").text == "sent")
        deadline = time.monotonic() + 20
        events: list[dict] = []
        while time.monotonic() < deadline and not events:
            with EventStore(db_path) as store:
                events = store.events(event="$ai_generation")
            time.sleep(0.2)
    (event,) = events
    props = event["properties"]
    assert props["$ai_trace_id"] == "js-trace" and props["token"] == "phc_js_test"
    assert props["$lib"] == "web" and event["distinct_id"]
    assert props["$ai_input"] == [{"role": "user", "content": "hi from the browser"}]
    assert any("-> 200: stored" in line for line in server_log)
    assert not [line for line in server_log if "-> 4" in line or "-> 5" in line]
    # The remote config and flags answers keep posthog-js free of console errors.
    assert severe_console_messages(browser) == []


def test_viewer_pages_searches_and_opens_a_deep_trace_in_a_large_store(browser, tmp_path):
    import sys

    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from gen_store import generate  # the bench's generator, at a test's size
    from posthog_llm.local.server import start_server

    db = str(tmp_path / "large.db")
    generate(db, traces=3_000, days=2, deep=2_000)
    with start_server(db) as server:
        browser.get(server.url + "/")
        wait(
            browser,
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#traces-table tbody tr")) == 200,
        )
        assert browser.find_element(By.ID, "trace-count").text == "200 of 3,001 traces"
        browser.find_element(By.ID, "load-more").click()
        wait(
            browser,
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#traces-table tbody tr")) == 400,
        )
        assert browser.find_element(By.ID, "trace-count").text == "400 of 3,001 traces"
        wait(browser, lambda d: "3,001 traces" in d.find_element(By.ID, "info").text)

        search = browser.find_element(By.ID, "search")
        search.send_keys("trace-000123")
        wait(browser, lambda d: d.find_element(By.ID, "trace-count").text == "10 traces")
        assert "search=trace-000123" in browser.current_url
        browser.refresh()  # the search survives a reload: it is in the URL
        wait(browser, lambda d: d.find_element(By.ID, "trace-count").text == "10 traces")
        assert browser.find_element(By.ID, "search").get_attribute("value") == "trace-000123"

        browser.get(server.url + "/trace/deep-chain")
        tree = wait(browser, ec.presence_of_element_located((By.ID, "trace-tree")), timeout=60)
        rows = tree.find_elements(By.CSS_SELECTOR, ".tree-row[data-kind]")
        assert len(rows) == 2_001
        last = rows[-1].get_attribute("textContent")
        assert "level 1999" in last and "L2000" in last
        # Deep rows keep their names inside the label column, not over the timeline.
        label = rows[-1].find_element(By.CSS_SELECTOR, ".tree-label")
        name = rows[-1].find_element(By.CSS_SELECTOR, ".node-name")
        assert name.location["x"] + 20 < label.location["x"] + label.size["width"]

        # The open trace follows new events.
        from posthog_llm.destinations.sqlite import connect, insert_events

        conn = connect(db)
        insert_events(
            conn,
            [
                (
                    "late-1",
                    "$ai_span",
                    "deep-user",
                    "2099-01-01T00:00:00+00:00",
                    "deep-chain",
                    json.dumps({"$ai_trace_id": "deep-chain", "$ai_span_name": "late arrival"}),
                    0.0,
                )
            ],
        )
        conn.close()
        wait(browser, lambda d: "late arrival" in d.find_element(By.ID, "trace-tree").text, 20)
        assert browser.find_element(By.ID, "trace-events").text == "2,001"

        # The trace list and the header follow a new trace too.
        browser.get(server.url + "/")
        wait(browser, lambda d: d.find_element(By.ID, "trace-count").text == "200 of 3,001 traces")
        conn = connect(db)
        props = {"$ai_trace_id": "brand-new", "$ai_span_name": "just arrived"}
        insert_events(
            conn,
            [
                (
                    "new-1",
                    "$ai_trace",
                    "u",
                    "2099-01-02T00:00:00+00:00",
                    "brand-new",
                    json.dumps(props),
                    0.0,
                )
            ],
        )
        conn.close()
        wait(
            browser,
            lambda d: d.find_element(By.ID, "trace-count").text == "200 of 3,002 traces",
            20,
        )
        wait(browser, lambda d: "3,002 traces" in d.find_element(By.ID, "info").text, 20)
        first = browser.find_element(By.CSS_SELECTOR, "#traces-table tbody tr")
        assert "just arrived" in first.text
        assert severe_console_messages(browser) == []
