"""End to end in a real browser: headless Debian Chromium, driven by Playwright for Python through its executable
path (no browser download), against a real ``unmask serve`` on a loopback port.

It picks a shared FF++ clip with the page's file picker, waits for the result card, and checks what a person
sees: the verdict agrees with the probability and threshold shown, the per-frame plot has one dot per sampled
frame, the selected frame shows its heat map (a decoded image of the video's size), the thumbnails, the JSON
download; then it drops an image on the drop zone. A screenshot is written to the test's tmp dir and copied
to ``/tmp/serve_screenshot.png`` (its path is printed). ``scripts/test.sh`` installs Chromium (apt-get, as root)
and Playwright (the dev extra) when they are missing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("UNMASK_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT_COPY = Path("/tmp/serve_screenshot.png")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e .[dev])")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; scripts/test.sh does it as root)",
                allow_module_level=True)

from _serve_fixtures import FFPP_CLIP, LiveServer, tiny_checkpoint  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory, ffpp_root):
    from unmask.serve import create_app

    run = tmp_path_factory.mktemp("browser_run") / "tiny"
    tiny_checkpoint(run)
    srv = LiveServer(create_app([str(run)], frames=8, heatmap_frames=3))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium_profile")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
                                                  viewport={"width": 1100, "height": 900}, accept_downloads=True,
                                                  bypass_csp=True)  # the page's CSP forbids eval; wait_for_function needs it
        try:
            yield b
        finally:
            b.close()


def test_upload_a_clip_and_see_verdict_plot_and_heat_map(server, browser, ffpp_root, tmp_path, astronaut_rgb):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('model-line').textContent.startsWith('model:')")
    assert "not calibrated" in page.text_content("#model-line")

    page.set_input_files("#file", str(ffpp_root / FFPP_CLIP))  # the file picker
    page.wait_for_selector("#result-card[data-status=done]", timeout=180_000)
    assert page.get_attribute("#progress", "data-last") == "100"  # XHR upload progress reached the end

    verdict = page.text_content("#verdict")
    prob = float(page.text_content("#probability").rstrip("%"))
    thr = float(page.text_content("#threshold").rstrip("%"))
    assert verdict in ("FAKE", "REAL") and thr == 30.0
    assert verdict == ("FAKE" if prob > thr else "REAL")
    assert page.is_visible("#result-card") and not page.is_visible("#error")

    assert page.locator("#score-plot circle.pt").count() == 8  # one dot per sampled frame
    assert page.locator("#score-plot circle.ring").count() == 3  # frames with images
    assert page.locator("#score-plot polyline.line").count() == 1

    page.wait_for_selector("#frame-img[data-loaded='1']", timeout=60_000)
    assert page.get_attribute("#frame-img", "data-kind") == "heatmap"
    size = page.evaluate("[document.getElementById('frame-img').naturalWidth, "
                         "document.getElementById('frame-img').naturalHeight]")
    assert size == [1280, 720]
    assert page.locator("#thumbs button").count() == 3
    page.wait_for_function("[...document.querySelectorAll('#thumbs img')].every(i => i.complete && i.naturalWidth > 0)")

    shot = tmp_path / "serve_result.png"
    page.screenshot(path=str(shot), full_page=True)
    shutil.copyfile(shot, SCREENSHOT_COPY)
    print(f"\nscreenshot: {shot} (copy: {SCREENSHOT_COPY})")

    page.uncheck("#show-heat")  # the plain frame with the boxes drawn by the page
    page.wait_for_selector("#frame-img[data-kind=frame][data-loaded='1']")
    assert page.locator("#box-layer rect").count() >= 1

    with page.expect_download() as dl:
        page.click("#download")
    saved = json.loads(Path(dl.value.path()).read_text())
    assert dl.value.suggested_filename == "183.unmask.json"
    assert saved["verdict"] == verdict.lower() and len(saved["frames"]) == 8

    # drag and drop: an image dropped on the drop zone
    import cv2

    ok, png = cv2.imencode(".png", astronaut_rgb[:, :, ::-1])
    b64 = base64.b64encode(png.tobytes()).decode()
    dt = page.evaluate_handle(
        """(b64) => { const bin = atob(b64); const u = new Uint8Array(bin.length);
             for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
             const dt = new DataTransfer(); dt.items.add(new File([u], "astronaut.png", {type: "image/png"}));
             return dt; }""", b64)
    page.dispatch_event("#drop", "drop", {"dataTransfer": dt})
    page.wait_for_function("document.getElementById('file-line').textContent.startsWith('astronaut.png')",
                           timeout=120_000)
    page.wait_for_selector("#result-card[data-status=done]")
    assert page.locator("#score-plot circle.pt").count() == 1
    assert "PNG image" in page.text_content("#file-line")
    assert errors == []
    page.close()


def test_the_page_says_why_a_file_is_refused(server, browser, tmp_path):
    page = browser.new_page()
    page.goto(server.url + "/")
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is a text file with a video's name\n")
    page.set_input_files("#file", str(bogus))
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    text = page.text_content("#error")
    assert text.startswith("notes.mp4: not an image or video") and "text" in text
    assert not page.is_visible("#result-card")
    page.close()


def test_a_server_with_a_token_asks_for_it_on_the_page(tmp_path, browser, astronaut_rgb):
    import cv2

    from unmask.serve import create_app

    tiny_checkpoint(tmp_path / "run")
    srv = LiveServer(create_app([str(tmp_path / "run")], token="page-token-4567", heatmap_frames=1))
    try:
        page = browser.new_page()
        page.goto(srv.url + "/")
        page.wait_for_selector("#token-box:not([hidden])")
        assert page.text_content("#model-line") == "this server needs an API token"
        face = tmp_path / "face.png"
        cv2.imwrite(str(face), astronaut_rgb[:, :, ::-1])
        page.set_input_files("#file", str(face))  # without the token: refused, and the page says so
        page.wait_for_selector("#error:not([hidden])")
        assert "API token" in page.text_content("#error")
        page.fill("#token", "page-token-4567")
        page.click("#token-save")
        page.wait_for_function("document.getElementById('model-line').textContent.startsWith('model:')")
        page.set_input_files("#file", str(face))
        page.wait_for_selector("#result-card[data-status=done]", timeout=120_000)
        page.wait_for_selector("#frame-img[data-loaded='1']")  # the heat map was fetched with the token
        page.close()
    finally:
        srv.stop()
