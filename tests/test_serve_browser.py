"""The search page in a real headless Chromium (Debian's chromium and chromedriver, through Selenium): a
shared link `/?camera=..&track=..` shows its results and response maps, a result opens its crops, a picked
and a dropped image are searched, and a gallery track searches with one click. A screenshot is kept in
tests/artifacts/ (git ignores it).

Without Chromium the test skips, and says so; with OCCREID_REQUIRE_BROWSER=1 (CI) it fails instead."""

from __future__ import annotations

import base64
import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image
from test_serve import live_server, served  # noqa: F401 (a module fixture: the small index)

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"


def _browser():
    """A headless Chromium driven by Selenium, or a skip (a failure under OCCREID_REQUIRE_BROWSER=1)."""
    binary = next((path for path in CHROMIUM if Path(path).is_file()), None)
    found = {"chromium": binary, "chromedriver": Path(CHROMEDRIVER).is_file()}
    missing = [what for what, there in found.items() if not there]
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("selenium (pip install occreid[test])")
    if missing:
        reason = f"the browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("OCCREID_REQUIRE_BROWSER") == "1":
            pytest.fail(f"OCCREID_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = tempfile.mkdtemp(prefix="occreid-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1200,1400",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver, profile


@pytest.fixture(scope="module")
def browser():
    driver, profile = _browser()
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# A file built in the page from base64 bytes, dropped on #drop as a user would drop it from a file manager.
DROP_FILE = """
const [b64, name] = arguments;
const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
const transfer = new DataTransfer();
transfer.items.add(new File([bytes], name, { type: "image/jpeg" }));
const target = document.getElementById("drop");
for (const type of ["dragenter", "dragover", "drop"]) {
  target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
}
"""


def test_the_page_link_results_crops_maps_picked_and_dropped_images(browser, served, tmp_path):  # noqa: F811
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from occreid.apps.serve.app import ServeState
    from occreid.retrieval import search_by_image, search_by_track

    _, index, extractor, explainer = served
    _, rows = index.list_tracks(0, 1)
    camera, track = rows[0]["camera"], rows[0]["track"]
    expected = search_by_track(index, camera, track, topk=10)["results"]
    # results are re-rendered while a condition reads them: a stale element means "not yet"
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))
    results_css = "#results [data-camera][data-track]"

    def shown_pairs(driver) -> list[tuple[str, int]]:
        cards = driver.find_elements(By.CSS_SELECTOR, results_css)
        return [(c.get_attribute("data-camera"), int(c.get_attribute("data-track"))) for c in cards]

    def image_answer(data: bytes) -> list[tuple[str, int]]:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        return [(r["camera"], r["track"]) for r in search_by_image(index, image, extractor)["results"]]

    with live_server(ServeState(index, extractor, explainer=explainer)) as url:
        browser.get(f"{url}/?camera={camera}&track={track}")
        wait.until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, results_css)))
        shown = browser.find_elements(By.CSS_SELECTOR, results_css)
        pairs = [(e.get_attribute("data-camera"), int(e.get_attribute("data-track"))) for e in shown]
        assert pairs == [(r["camera"], r["track"]) for r in expected]  # the API's ranking, in order
        assert all(c != camera for c, _ in pairs)  # other cameras only

        # the CNN's response maps: the query's and the top five results'
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#explain figure img")) == 6)
        maps = browser.find_elements(By.CSS_SELECTOR, "#explain figure img")
        assert all(browser.execute_script("return arguments[0].naturalWidth", m) == 32 for m in maps)
        assert "Response maps" in browser.find_element(By.ID, "explain-title").text

        shown[0].click()
        wait.until(ec.visibility_of_element_located((By.ID, "crops")))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#crops-list img"))
        crops = browser.find_elements(By.CSS_SELECTOR, "#crops-list img")
        assert len(crops) == len(index.crops(*pairs[0]))
        wait.until(lambda d: all(d.execute_script("return arguments[0].naturalWidth", c) > 0 for c in crops))

        gallery = browser.find_elements(By.CSS_SELECTOR, "#gallery [data-camera][data-track]")
        assert len(gallery) == min(48, index.list_tracks(0, 0)[0])

        # pick a file (the file input), then drop one: each shows the library's answer for that image
        picked = tmp_path / "picked.jpg"
        picked.write_bytes(index.crops(*pairs[-1])[0])
        browser.find_element(By.ID, "pick").send_keys(str(picked))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#query img.query"))
        assert "camera=" not in browser.current_url  # an image query is no shareable track link
        wait.until(lambda d: shown_pairs(d) == image_answer(picked.read_bytes()))
        thumbnail = index.thumbnail(*pairs[0])
        browser.execute_script(DROP_FILE, base64.b64encode(thumbnail).decode(), "query.jpg")
        wait.until(lambda d: shown_pairs(d) == image_answer(thumbnail))
        wait.until(ec.visibility_of_element_located((By.ID, "explain")))  # the dropped image's maps
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map((e) => e.name)"
            ".concat([location.href]).filter((u) => !u.startsWith('data:') && !u.startsWith('blob:'))"
        )
        assert loaded and all(u.startswith(url + "/") for u in loaded), loaded  # nothing from elsewhere
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "serve_page.png"))

        gallery = browser.find_elements(By.CSS_SELECTOR, "#gallery [data-camera][data-track]")
        gallery[-1].click()
        last = gallery[-1].get_attribute("data-camera"), gallery[-1].get_attribute("data-track")
        wait.until(lambda d: f"camera={last[0]}&track={last[1]}" in d.current_url)

        browser.get(f"{url}/?camera=nocam&track=1")  # a link to a track the index does not have
        wait.until(lambda d: "nocam" in d.find_element(By.ID, "message").text)
        assert browser.find_element(By.ID, "message").get_attribute("class") == "error"
        assert not browser.find_elements(By.CSS_SELECTOR, results_css)
    assert (ARTIFACTS / "serve_page.png").stat().st_size > 10_000


def test_without_chromium_the_browser_test_skips_and_says_why_or_fails_under_ci(monkeypatch):
    import test_serve_browser as module

    monkeypatch.setattr(module, "CHROMEDRIVER", "/nonexistent/chromedriver")
    monkeypatch.delenv("OCCREID_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs chromedriver"):
        module._browser()
    monkeypatch.setenv("OCCREID_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="OCCREID_REQUIRE_BROWSER=1 but"):
        module._browser()


class PatternExplainer:
    """An OGFR model's answer to /api/explain: the JSON the page draws (the model side: test_serve.py)."""

    kind = "ogfr"

    def explain(self, image):
        return {
            "kind": "ogfr",
            "pattern": [{"pattern": "top", "weight": 0.75}, {"pattern": "none", "weight": 0.25}],
        }


def test_the_page_draws_an_ogfr_models_occlusion_pattern(browser, served):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from occreid.apps.serve.app import ServeState

    _, index, extractor, _ = served
    _, rows = index.list_tracks(0, 1)
    with live_server(ServeState(index, extractor, explainer=PatternExplainer())) as url:
        browser.get(f"{url}/?camera={rows[0]['camera']}&track={rows[0]['track']}")
        WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#explain .bar"))
        bars = browser.find_elements(By.CSS_SELECTOR, "#explain .bar")
        assert [b.text for b in bars] == ["top 75.0%", "none 25.0%"]
        widths = [b.find_element(By.CSS_SELECTOR, ".fill").size["width"] / b.size["width"] for b in bars]
        assert widths[0] == pytest.approx(0.75, abs=0.03) and widths[1] == pytest.approx(0.25, abs=0.03)
        assert "occlusion pattern" in browser.find_element(By.ID, "explain-title").text


class ManyTracks:
    """A gallery of 120 tracks (the page's side of paging; the index's own list_tracks is tested with it)."""

    def __init__(self, thumbnail: bytes):
        self.jpeg = thumbnail
        self.rows = [
            {"camera": f"cam{1 + i % 3}", "track": i, "first_frame": 1, "last_frame": 9, "seconds": None}
            for i in range(120)
        ]

    def list_tracks(self, offset, limit):
        return len(self.rows), self.rows[offset : offset + limit]

    def thumbnail(self, camera, track):
        return self.jpeg


def test_the_gallery_is_paged(browser, served):  # noqa: F811
    """Two clicks on "next" before any answer came back go two pages on."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from occreid.apps.serve.app import ServeState

    _, index, _, _ = served
    _, rows = index.list_tracks(0, 1)
    gallery = ManyTracks(index.thumbnail(rows[0]["camera"], rows[0]["track"]))
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))

    def tracks_shown(driver) -> list[int]:
        cards = driver.find_elements(By.CSS_SELECTOR, "#gallery [data-track]")
        return [int(c.get_attribute("data-track")) for c in cards]

    with live_server(ServeState(gallery)) as url:
        browser.get(url + "/")
        wait.until(lambda d: tracks_shown(d) == list(range(48)))
        assert browser.find_element(By.ID, "page-label").text == "1–48 of 120"
        assert not browser.find_element(By.ID, "prev").is_enabled()
        browser.execute_script("const next = document.getElementById('next'); next.click(); next.click();")
        wait.until(lambda d: tracks_shown(d) == list(range(96, 120)))
        assert browser.find_element(By.ID, "page-label").text == "97–120 of 120"
        assert not browser.find_element(By.ID, "next").is_enabled()
        browser.find_element(By.ID, "prev").click()
        wait.until(lambda d: tracks_shown(d) == list(range(48, 96)))
        assert "frames 1–9" in browser.find_element(By.CSS_SELECTOR, "#gallery .card").text  # no frame rate
