"""The card's index.html in real headless Chromium (Debian's `chromium`, driven by Playwright for
Python; never `playwright install`): it renders, shows the funnel and the plots, no console errors.
Skips cleanly when chromium or playwright is not installed."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_card_page_renders_funnel_and_plots(curated_run, browser, tmp_path):
    _, out, _ = curated_run
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((out / "card" / "index.html").resolve().as_uri())
    page.wait_for_load_state("load")
    assert errors == []
    # self-contained: nothing but the page itself (and its data: images) is fetched
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert page.title() == "cardtest: data card"
    funnel = page.locator("#funnel-sft")
    assert funnel.is_visible()
    assert "exact_dedup" in funnel.inner_text() and "decontaminate" in funnel.inner_text()
    images = page.locator("figure img")
    assert images.count() >= 5
    widths = page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert all(w > 100 for w in widths), widths
    assert page.locator("h2#contamination").is_visible()
    assert "not declared" in page.locator("#distribution + table").inner_text()
    page.screenshot(path=str(tmp_path / "card.png"), full_page=True)
    assert (tmp_path / "card.png").stat().st_size > 10_000
