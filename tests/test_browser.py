"""End to end in a real headless Chromium: the HTML report opened from disk, and the
explorer served by uvicorn on a free loopback port.

Skipped when Debian's chromium or Playwright for Python is missing (the browser is
never downloaded). Screenshots go to the test's temporary folder, with copies in
/tmp/assocmem_shots/ to look at.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from assocmem.experiment import run_case
from tests.test_views import GRAPH, HUNGRY, TASTY, fixture_experiment, run_outputs

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SHOTS = Path("/tmp/assocmem_shots")
TIMEOUT_MS = 60_000  # figures are drawn on a shared CPU: be patient, never time them

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is absent")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)", allow_module_level=True)
expect = sync_api.expect


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors  # type: ignore[attr-defined]
    yield pg
    ctx.close()


def shoot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / name)
    return path


def decisions() -> dict[str, str]:
    """The top token the library computes for each fixture sentence."""
    exp = fixture_experiment()
    model = exp.build()
    return {c.name: run_case(model, c).top[0] for c in exp.cases}


# ---------------------------------------------------------------- the report


def test_report_from_disk(page, tmp_path_factory, tmp_path):
    _, root = run_outputs(tmp_path_factory)
    exp = fixture_experiment()
    model = exp.build()
    results = [run_case(model, c) for c in exp.cases]
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((root / "report.html").as_uri())

    cases = page.locator("section.case")
    expect(cases).to_have_count(len(results))
    for k, r in enumerate(results):
        sec = cases.nth(k)
        expect(sec.locator(".tok")).to_have_text(r.trace.tokens)
        expect(sec.locator("table.logits tbody tr")).to_have_count(len(r.logits))
        expect(sec.locator("table.logits tbody tr").first).to_have_attribute("data-token", r.top[0])
        expect(sec.locator(".verdict")).to_have_text("PASS" if r.passed else "FAIL")
        # figures decoded (an image that failed to load has no natural width)
        for img in sec.locator("figure img").all():
            assert img.evaluate("i => i.complete && i.naturalWidth > 100"), img
    assert page.locator("figure.graph img").evaluate("i => i.naturalWidth > 100")
    # the file loads nothing but itself (data: images are not requests)
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []

    # hovering a token shows its weight rows, one table per bank, one row per layer
    r = results[0]
    pos = r.trace.tokens.index("ВКУСНАЯ")
    sec = cases.nth(0)
    sec.locator(f'.tok[data-pos="{pos}"]').hover()
    reads = sec.locator(".reads")
    expect(reads.locator("h4")).to_contain_text("ВКУСНАЯ (position 7)")
    expect(reads.locator("table.wrow")).to_have_count(len(r.trace.banks))
    assoc = reads.locator('table.wrow[data-bank="assoc"]')
    expect(assoc.locator("tbody tr")).to_have_count(len(r.trace.layers))
    want = [f"{float(v):.2f}" for v in r.trace.weights(1, "assoc")[pos]]
    expect(assoc.locator("tbody tr").first.locator("td")).to_have_text(want)
    expect(sec.locator(".tok.active")).to_have_text("ВКУСНАЯ")
    assert not page.errors  # type: ignore[attr-defined]
    shoot(page, tmp_path, "report.png")
    # the top of the page at screen size, to read the strip and the hover tables
    page.screenshot(path=str(SHOTS / "report_hover.png"))


# ---------------------------------------------------------------- the explorer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def explorer_url():
    import uvicorn

    from assocmem.views.server import create_app

    port = free_port()
    app = create_app(fixture_experiment(), allowed_hosts=["127.0.0.1"])
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the explorer did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)
    # a figure still being drawn for a closed page runs on in a worker thread: let it
    # finish, or the interpreter may exit under it (C++ "terminate called")
    drawing = app.state.explorer._draw
    if drawing.acquire(timeout=60):
        drawing.release()


def test_explorer_follows_edits(page, explorer_url, tmp_path):
    want = decisions()
    # the fixture is chosen so that the sentence decides: the edit must flip the answer
    assert (want["tasty"], want["hungry"]) == ("КАШУ", "МАША")
    page.goto(explorer_url)
    top = page.locator("#result .top-token")
    verdict = page.locator("#result .verdict")
    expect(top).to_have_text(want["tasty"], timeout=TIMEOUT_MS)
    expect(verdict).to_have_text("PASS")  # case 1 expects КАШУ
    expect(page.locator("#result .tok")).to_have_text([*TASTY.split(), "*ОНА"])

    # ВКУСНАЯ → ГОЛОДНАЯ: the top token follows the library's decision
    page.fill("#sentence", HUNGRY)
    expect(page.locator("#result .tok").nth(6)).to_have_text("ГОЛОДНАЯ", timeout=TIMEOUT_MS)
    expect(top).to_have_text(want["hungry"])
    expect(verdict).to_have_text("FAIL")  # still expecting КАШУ
    page.fill("#expect", "МАША")
    expect(verdict).to_have_text("PASS", timeout=TIMEOUT_MS)
    # then the figures arrive for the same run
    for fig in ("figure.weights img", "figure.lens img"):
        expect(page.locator(f"#result {fig}")).to_be_visible(timeout=TIMEOUT_MS)
        assert page.locator(f"#result {fig}").evaluate("i => i.complete && i.naturalWidth > 100")
    expect(page.locator("#status")).to_have_text("", timeout=TIMEOUT_MS)
    expect(page.locator("#graph-figure img")).to_be_visible()
    page.locator('#result .tok[data-pos="6"]').hover()
    expect(page.locator("#result .reads h4")).to_contain_text("ГОЛОДНАЯ")
    assert not page.errors  # type: ignore[attr-defined]
    shoot(page, tmp_path, "explorer.png")


def test_explorer_shows_graph_errors_at_their_line(page, explorer_url, tmp_path):
    page.goto(explorer_url)
    expect(page.locator("#result .top-token")).not_to_be_empty(timeout=TIMEOUT_MS)
    page.fill("#graph", GRAPH + "ВКУСНАЯ = = КАШУ\n")
    box = page.locator("#graph-error")
    expect(box).to_be_visible(timeout=TIMEOUT_MS)
    expect(box.locator(".where")).to_contain_text("line 7, column 11")
    expect(box.locator("pre")).to_contain_text("ВКУСНАЯ = = КАШУ")
    bad = page.locator("#gutter div.err")
    expect(bad).to_have_count(1)
    expect(bad).to_have_attribute("data-line", "7")
    expect(page.locator("#result")).to_have_class("stale")  # the old answer is greyed
    shoot(page, tmp_path, "explorer_graph_error.png")

    # fixing the line clears the error and runs again
    page.fill("#graph", GRAPH)
    expect(box).to_be_hidden(timeout=TIMEOUT_MS)
    expect(page.locator("#gutter div.err")).to_have_count(0)


def test_explorer_refuses_oversized_input_visibly(page, explorer_url, tmp_path):
    page.goto(explorer_url)
    expect(page.locator("#result .top-token")).not_to_be_empty(timeout=TIMEOUT_MS)
    page.fill("#sentence", " ".join(["МАША"] * 65))
    err = page.locator("#error")
    expect(err).to_be_visible(timeout=TIMEOUT_MS)
    expect(err).to_contain_text("too large")
    expect(err).to_contain_text("at most 64")
    expect(err).to_have_attribute("data-status", "413")
    expect(page.locator("#sentence")).to_have_class("bad")
    shoot(page, tmp_path, "explorer_too_large.png")
    page.fill("#sentence", TASTY)
    page.fill("#temp-assoc", "0")
    expect(err).to_contain_text("temp assoc must be between", timeout=TIMEOUT_MS)
    expect(page.locator("#temp-assoc")).to_have_class("bad")
    shoot(page, tmp_path, "explorer_bad_temp.png")
