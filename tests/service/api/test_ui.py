"""The web page in a real browser: Debian's chromium, headless, driven by Playwright, against
``python -m service`` on 127.0.0.1. No browser is downloaded (``make chromium`` installs it).

Each test saves a screenshot of the page as it ends in its pytest tmp_path."""

from __future__ import annotations

import base64
import gzip
import io
import os
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    FilePayload,
    Page,
    expect,
    sync_playwright,
)
from prometheus_client.parser import text_string_to_metric_families

from harness.live_server import running_service
from tests.support.tiny_store import copy_model

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium")
FASHION_MNIST_TEST = (
    Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    / "t10k-images-idx3-ubyte.gz"
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (CI installs Debian's: make chromium)"
    ),
]

# For every image that matches: loaded, and not one flat value (drawn on a canvas and read back).
RENDERED = """(imgs) => imgs.map((img) => {
  if (!img.complete || img.naturalWidth === 0) return "not loaded";
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let low = 255, high = 0;
  for (let i = 0; i < data.length; i += 4) {
    low = Math.min(low, data[i]);
    high = Math.max(high, data[i]);
  }
  return high > low ? "ok" : `one value (${low})`;
})"""
LOADED = "(s) => [...document.querySelectorAll(s)].every((img) => img.naturalWidth > 0)"
SOURCES = "(imgs) => imgs.map((img) => img.src.split(',')[1])"


@dataclass
class Session:
    page: Page
    api: httpx.Client
    console_errors: list[str] = field(default_factory=list)

    def open(self, model: str) -> None:
        self.page.goto(f"{self.api.base_url}/?model={model}")  # / redirects to /ui/
        expect(self.page.locator("#model")).to_have_value(model)

    def open_sampled(self, model: str) -> Page:
        """Open ``model``'s page once its first grid (drawn on opening) is in; the page."""
        self.open(model)
        expect(self.page.locator("#seed-used")).not_to_have_text("none yet")
        return self.page

    def assert_rendered(self, selector: str, count: int) -> None:
        images = self.page.locator(selector)
        expect(images).to_have_count(count)
        expect(images.first).to_be_visible()
        self.page.wait_for_function(LOADED, arg=selector)
        assert images.evaluate_all(RENDERED) == ["ok"] * count

    def sources(self, selector: str) -> list[str]:
        sources: list[str] = self.page.locator(selector).evaluate_all(SOURCES)
        return sources

    def assert_console_clean(self) -> None:
        assert self.console_errors == []


@pytest.fixture(scope="module")
def server(shipped_or_tiny_store: Path) -> Iterator[str]:
    with running_service(shipped_or_tiny_store, SERVICE_DEVICE="cpu") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def models(server: str) -> dict[str, dict[str, Any]]:
    listed = httpx.get(f"{server}/models").json()["models"]
    return {m["family"]: m for m in listed if m["state"] == "ready"}


@pytest.fixture
def session(browser: Browser, server: str, tmp_path: Path) -> Iterator[Session]:
    with browsing(browser, server, tmp_path) as session:
        yield session


@contextmanager
def browsing(browser: Browser, server: str, tmp_path: Path) -> Iterator[Session]:
    """A page of its own on ``server``; its screenshot saved in ``tmp_path`` at the end."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    page.set_default_timeout(15_000)
    with httpx.Client(base_url=server, timeout=60) as api:
        session = Session(page, api)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                session.console_errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: session.console_errors.append(str(error)))
        yield session
    page.screenshot(path=tmp_path / "ui.png", full_page=True)
    context.close()


def fashion_png(index: int, path: Path) -> Path:
    """Image ``index`` of the Fashion-MNIST test split, as a 28x28 grayscale PNG."""
    with gzip.open(FASHION_MNIST_TEST, "rb") as f:
        pixels = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    Image.fromarray(pixels[index]).save(path)
    return path


def test_root_leads_to_the_page_and_the_schema_leaves_it_out(server: str) -> None:
    page = httpx.get(f"{server}/", follow_redirects=True)
    assert page.status_code == 200 and str(page.url) == f"{server}/ui/"
    assert '<script type="module" src="app.js">' in page.text
    assert httpx.get(f"{server}/ui/app.js").headers["content-type"].startswith("text/javascript")
    missing = httpx.get(f"{server}/ui/secrets.txt")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no route GET /ui/secrets.txt", "code": "not_found"}
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]


def test_sample_grid_seed_and_copy_as_curl(session: Session, models: dict[str, Any]) -> None:
    vae = models["vae"]["name"]
    page = session.open_sampled(vae)
    expect(page.locator("#card")).to_contain_text(models["vae"]["provider"])

    page.fill("#n", "6")
    page.fill("#seed", "42")
    page.press("#seed", "Enter")  # the form works from the keyboard
    expect(page.locator("#seed-used")).to_have_text("42")
    session.assert_rendered("#grid img", 6)
    expect(page.locator("#grid img").first).to_have_attribute(
        "alt", f"{vae} sample, seed 42, image 1 of 6"
    )
    latency = re.compile(r"^POST /sample · 200 · [\d.]+ ms$")
    expect(page.locator("#sample-status")).to_have_text(latency)

    page.click("#copy-curl")
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    command = page.evaluate("navigator.clipboard.readText()")
    assert command == page.inner_text("#curl")
    assert '"seed":42' in command
    # The command is exact: run as curl would, it gives the images on the page.
    curl, silent, dash_x, post, url, dash_h, header, dash_d, body = shlex.split(command)
    assert (curl, silent, dash_x, post, dash_h, dash_d) == ("curl", "-s", "-X", "POST", "-H", "-d")
    replay = session.api.post(url, content=body, headers=dict([header.split(": ")]))
    assert replay.json()["images"] == session.sources("#grid img")

    before = session.sources("#grid img")
    page.click("#new-seed")
    expect(page.locator("#seed-used")).not_to_have_text("42")
    seed = page.inner_text("#seed-used")
    assert seed.isdigit()
    session.assert_rendered("#grid img", 6)
    assert session.sources("#grid img") != before
    expect(page.locator("#grid img").last).to_have_attribute(
        "alt", f"{vae} sample, seed {seed}, image 6 of 6"
    )
    assert f'"seed":{seed}' in page.inner_text("#curl")
    session.assert_console_clean()


def test_interpolation_between_seeds_with_the_slider(
    session: Session, models: dict[str, Any]
) -> None:
    gan = models["dcgan"]["name"]
    page = session.page
    session.open(gan)
    page.fill("#start-seed", "3")
    page.fill("#end-seed", "5")
    page.fill("#steps", "6")
    page.get_by_label("slerp").check()
    page.click("#interpolate-form button[type=submit]")
    session.assert_rendered("#strip img", 6)
    expected = session.api.post(
        "/interpolate",
        json={
            "model": gan,
            "start": {"seed": 3},
            "end": {"seed": 5},
            "steps": 6,
            "method": "slerp",
        },
    ).json()["images"]
    assert session.sources("#strip img") == expected

    slider = page.get_by_label("Step", exact=True)
    slider.press("End")
    expect(page.locator("#frame-label")).to_have_text("step 6 of 6")
    slider.press("ArrowLeft")
    expect(page.locator("#frame-label")).to_have_text("step 5 of 6")
    assert session.sources("#frame") == [expected[4]]
    expect(page.locator("#frame")).to_have_attribute(
        "alt", f"{gan}, slerp from seed 3 to seed 5, step 5 of 6"
    )
    session.assert_rendered("#frame", 1)
    session.assert_console_clean()


def test_upload_reconstruct_encode_drop_and_interpolate_images(
    session: Session, models: dict[str, Any], tmp_path: Path
) -> None:
    vae = models["vae"]
    page = session.page
    session.open(vae["name"])
    boot, pullover = (
        fashion_png(0, tmp_path / "boot.png"),
        fashion_png(1, tmp_path / "pullover.png"),
    )

    page.set_input_files("#upload", boot)
    expect(page.locator("#original-caption")).to_have_text("boot.png, 28×28")
    session.assert_rendered("#original", 1)
    page.click("#reconstruct")
    session.assert_rendered("#reconstruction", 1)
    b64 = base64.b64encode(boot.read_bytes()).decode()
    expected = session.api.post("/reconstruct", json={"model": vae["name"], "images": [b64]})
    assert session.sources("#reconstruction") == expected.json()["images"]
    expect(page.locator("#reconstruction-caption")).to_contain_text("mean squared error")
    page.click("#encode")
    expect(page.locator("#numbers")).to_contain_text(f"mean ({vae['latent_dim']}): ")

    # Drag and drop, here of an image of another size: it is scaled to 28x28 first.
    big = io.BytesIO()
    Image.open(pullover).resize((56, 56)).save(big, format="PNG")
    drop = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "pullover.png", {type: "image/png"}));
            return transfer;
        }""",
        base64.b64encode(big.getvalue()).decode(),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": drop})
    expect(page.locator("#original-caption")).to_have_text(
        "pullover.png, scaled from 56×56 to 28×28"
    )
    expect(page.locator("#original")).to_have_attribute("alt", "your image: pullover.png")
    session.assert_rendered("#original", 1)

    not_an_image = FilePayload(name="notes.png", mimeType="image/png", buffer=b"hello")
    page.set_input_files("#upload", files=[not_an_image])
    expect(page.locator("#upload-status")).to_have_text(
        "notes.png is not an image this browser can read. Use a PNG, JPEG, GIF, WebP or BMP file."
    )
    expect(page.locator("#upload-status")).to_have_attribute("role", "alert")
    expect(page.locator("#reconstruct")).to_be_disabled()

    page.set_input_files("#start-file", boot)
    page.set_input_files("#end-file", pullover)
    page.click("#interpolate-form button[type=submit]")
    session.assert_rendered("#strip img", 8)
    expect(page.locator("#strip img").nth(7)).to_have_attribute(
        "alt", f"{vae['name']}, lerp from boot.png to pullover.png, step 8 of 8"
    )
    session.assert_console_clean()


def test_api_errors_are_shown_as_they_come(session: Session, models: dict[str, Any]) -> None:
    vae = models["vae"]["name"]
    page = session.open_sampled(vae)
    page.fill("#n", "100000")
    page.click("#sample-form button[type=submit]")
    error = session.api.post("/sample", json={"model": vae, "n": 100000}).json()
    status = page.locator("#sample-status")
    expect(status).to_contain_text("POST /sample · 422 · ")
    expect(status).to_contain_text(f" · {error['code']}: {error['error']}")
    expect(status).to_have_attribute("role", "alert")
    expect(page.locator("#calls li").first).to_contain_text("POST /sample · 422")
    # The only console error is the browser's own note of the 422 response.
    assert len(session.console_errors) == 1 and "422" in session.console_errors[0]


def test_controls_follow_each_models_operations(session: Session, models: dict[str, Any]) -> None:
    page = session.page
    session.open(models["vae"]["name"])
    for model in models.values():
        operations = set(model["operations"])
        page.select_option("#model", model["name"])
        expect(page.locator("#card")).to_contain_text(", ".join(model["operations"]))
        visible = {
            "#sample-section": "sample" in operations,
            "#interpolate-section": "interpolate" in operations,
            "#upload-section": bool(operations & {"encode", "reconstruct", "score", "complete"}),
            "#encode": "encode" in operations,
            "#score": "score" in operations,
            "#complete": "complete" in operations,
            "#traverse-section": "traverse" in operations,
            "#label": model.get("conditional") is True or model["family"] == "cvae",
            "#truncation": model["family"] in {"dcgan", "wgan-gp"},
            "#temperature": model["family"] in {"pixelcnn", "pixelrnn"},
        }
        shown = {selector: page.locator(selector).is_visible() for selector in visible}
        assert shown == visible, model["name"]
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll("input, select")]
            .filter((el) => el.labels.length === 0).map((el) => el.id || el.name)"""
    )
    assert unlabelled == []
    session.assert_console_clean()


def cancelled_by_disconnect(api: httpx.Client, model: str) -> float:
    """``genserve_cancelled_requests_total`` of ``model``'s samplings cut by their client."""
    for family in text_string_to_metric_families(api.get("/metrics").text):
        for s in family.samples:
            if s.name == "genserve_cancelled_requests_total" and s.labels == {
                "model": model,
                "operation": "sample",
                "reason": "disconnect",
            }:
                return float(s.value)
    return 0.0


# Every src that #grid's images took, in order: a partial canvas replaces them all.
RECORD_GRID = """() => {
  window.gridStates = [];
  new MutationObserver((records) => {
    for (const r of records) {
      const srcs = [...r.addedNodes].filter((n) => n.tagName === "IMG").map((img) => img.src);
      if (srcs.length) window.gridStates.push(srcs.join(" "));
    }
  }).observe(document.getElementById("grid"), { childList: true });
}"""


def test_pixelcnn_streams_its_rows_into_the_grid(
    session: Session, models: dict[str, Any], tmp_path: Path
) -> None:
    pixelcnn = models["pixelcnn"]["name"]
    page = session.page
    session.open(pixelcnn)
    page.fill("#n", "4")
    page.fill("#seed", "7")
    page.fill("#scale", "2")
    page.fill("#columns", "2")  # streamed models: the page lays the images out itself
    page.evaluate(RECORD_GRID)
    page.click("#sample-form button[type=submit]")
    expect(page.locator("#seed-used")).to_have_text("7")
    session.assert_rendered("#grid img", 4)

    body = {"model": pixelcnn, "n": 4, "seed": 7, "scale": 2}
    result = session.api.post("/sample", json=body).json()["images"]
    assert session.sources("#grid img") == result
    states: list[str] = page.evaluate("window.gridStates")
    partials = states[:-1]
    assert states[-1] == " ".join(f"data:image/png;base64,{b64}" for b64 in result)
    assert len(set(partials)) >= 2 and states[-1] not in partials  # it formed row by row
    bar = page.locator("#sample-bar")
    assert bar.evaluate("(bar) => [bar.value, bar.max]") == [28, 28]
    expect(page.locator("#sample-rows")).to_contain_text("28 rows in ")
    expect(page.locator("#sample-cancel")).to_be_hidden()
    sizes = page.locator("#grid img").evaluate_all(
        "(imgs) => imgs.map((i) => [i.naturalWidth, i.getBoundingClientRect().top])"
    )
    assert [w for w, _ in sizes] == [56] * 4
    tops = [top for _, top in sizes]
    assert tops[0] == tops[1] < tops[2] == tops[3]  # two columns
    assert "-H 'Accept: text/event-stream'" in page.inner_text("#curl")

    page.set_input_files("#upload", fashion_png(0, tmp_path / "boot.png"))
    page.fill("#rows", "20")
    page.click("#complete")  # completion streams too
    expect(page.locator("#upload-status")).to_have_text(re.compile(r"^POST /complete · 200 · "))
    session.assert_rendered("#completions img", 1)
    expect(page.locator("#completions img")).not_to_have_attribute("alt", re.compile("drawn"))
    bar = page.locator("#complete-bar")
    assert bar.evaluate("(bar) => bar.value === bar.max && bar.max > 0")
    session.assert_console_clean()


def test_cancel_stops_the_services_drawing(session: Session, models: dict[str, Any]) -> None:
    slow = models.get("pixelrnn", models["pixelcnn"])["name"]
    quick = models["pixelcnn"]["name"]
    page = session.page
    session.open(slow)
    before = cancelled_by_disconnect(session.api, slow)
    page.fill("#n", "16")
    page.click("#sample-form button[type=submit]")
    expect(page.locator("#sample-cancel")).to_be_visible()
    page.wait_for_function("document.getElementById('sample-bar').value >= 4")
    left = page.inner_text("#sample-rows")  # "4 of 28 rows · 0.6 s · about 2.9 s left"
    page.click("#sample-cancel")
    expect(page.locator("#sample-status")).to_contain_text(
        "POST /sample · cancelled · ", timeout=5_000
    )
    expect(page.locator("#sample-rows")).to_contain_text("cancelled at ")
    expect(page.locator("#sample-cancel")).to_be_hidden()
    expect(page.locator("#calls li").first).to_contain_text("POST /sample · cancelled")

    deadline = time.monotonic() + 5
    while cancelled_by_disconnect(session.api, slow) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cancelled_by_disconnect(session.api, slow) == before + 1
    # The one autoregressive slot is free: a small sampling runs now, not after the rest.
    eta = re.search(r"about ([\d.]+) s left", left)
    assert eta is not None, left
    started = time.perf_counter()
    assert session.api.post("/sample", json={"model": quick, "n": 1}).status_code == 200
    assert time.perf_counter() - started < max(float(eta.group(1)) * 0.8, 0.5)

    page.fill("#n", "1")  # and the page samples again
    page.click("#sample-form button[type=submit]")
    session.assert_rendered("#grid img", 1)
    expect(page.locator("#sample-status")).to_have_text(re.compile(r"^POST /sample · 200 · "))
    session.assert_console_clean()


def test_scale_and_columns_size_the_grid(session: Session, models: dict[str, Any]) -> None:
    vae = models["vae"]["name"]
    page = session.open_sampled(vae)
    page.fill("#n", "6")
    page.fill("#seed", "5")
    page.fill("#scale", "4")
    page.click("#sample-form button[type=submit]")
    session.assert_rendered("#grid img", 6)
    widths = page.locator("#grid img").evaluate_all("(imgs) => imgs.map((i) => i.naturalWidth)")
    assert widths == [4 * 28] * 6

    page.fill("#scale", "2")
    page.fill("#columns", "4")  # one PNG grid: 4 columns, 2 rows, 2 pixels between tiles
    page.click("#sample-form button[type=submit]")
    expect(page.locator("#grid img")).to_have_count(1)
    expect(page.locator("#grid img")).to_have_attribute(
        "alt", f"{vae} sample, seed 5, 6 images in 4 columns"
    )
    session.assert_rendered("#grid img", 1)
    size = page.locator("#grid img").evaluate("(i) => [i.naturalWidth, i.naturalHeight]")
    assert size == [2 * (4 * 28 + 3 * 2), 2 * (2 * 28 + 2)]
    command = page.inner_text("#curl")
    assert "-H 'Accept: image/png'" in command and command.endswith("-o grid.png")
    body = {"model": vae, "n": 6, "seed": 5, "scale": 2, "columns": 4}
    grid = session.api.post("/sample", json=body, headers={"Accept": "image/png"}).content
    assert session.sources("#grid img") == [base64.b64encode(grid).decode()]
    session.assert_console_clean()


KEY = "ui-test-key-0123456789"


def test_with_api_keys_the_page_asks_for_one(
    browser: Browser, tiny_store: Path, tmp_path: Path
) -> None:
    with running_service(
        tiny_store, SERVICE_DEVICE="cpu", SERVICE_WORKERS="1", SERVICE_API_KEYS=f"ui:{KEY}"
    ) as url:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{url}/?model=vae-tiny")
        key_status = page.locator("#key-status")
        expect(key_status).to_have_text(
            "This service needs an API key: enter yours above and press Use key."
        )
        expect(key_status).to_have_attribute("role", "alert")
        expect(page.locator("#model-status")).to_contain_text("GET /models · 401 · ")
        expect(page.locator("#api-key")).to_have_attribute("aria-invalid", "true")

        page.fill("#api-key", "not-the-key-at-all")
        page.press("#api-key", "Enter")
        expect(key_status).to_contain_text("The service refused this API key")

        page.fill("#api-key", KEY)
        page.click("#key-form button")
        expect(page.locator("#model")).to_have_value("vae-tiny")
        expect(page.locator("#seed-used")).not_to_have_text("none yet")  # it sampled
        expect(page.locator("#grid img")).to_have_count(16)
        expect(key_status).to_have_text("key in use")
        assert page.evaluate("sessionStorage.getItem('genserve.apiKey')") == KEY
        assert page.evaluate("localStorage.length") == 0
        command = page.inner_text("#curl")
        assert '-H "Authorization: Bearer $GENSERVE_API_KEY"' in command and KEY not in command
        page.screenshot(path=tmp_path / "ui.png", full_page=True)
        context.close()


# For every image that matches: whether some pixel's channels differ (colour, not gray).
COLOURED = """(imgs) => imgs.map((img) => {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] !== data[i + 1] || data[i + 1] !== data[i + 2]) return true;
  }
  return false;
})"""


@pytest.fixture(scope="module")
def colour_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_store: Path, tiny_store_rgb: Path
) -> Iterator[str]:
    """The RGB tiny store (vae-rgb-tiny 3x32x32, dcgan-rgb-tiny 3x28x28) and the gray vae-tiny."""
    store = tmp_path_factory.mktemp("colour_ui") / "store"
    shutil.copytree(tiny_store_rgb, store)
    copy_model(tiny_store, "vae-tiny", store)
    with running_service(store, SERVICE_DEVICE="cpu") as url:
        yield url


def _png(pixels: np.ndarray, path: Path) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def test_colour_models_sample_in_colour_and_uploads_take_the_models_shape(
    browser: Browser, colour_server: str, tmp_path: Path
) -> None:
    with browsing(browser, colour_server, tmp_path) as session:
        page = session.open_sampled("vae-rgb-tiny")
        expect(page.locator("#upload-hint")).to_have_text(
            "It is scaled to 32×32, the model's image size, and sent in colour (RGB)."
        )
        page.fill("#n", "4")
        page.fill("#seed", "5")
        page.fill("#scale", "1")
        page.click("#sample-form button[type=submit]")
        expect(page.locator("#seed-used")).to_have_text("5")
        session.assert_rendered("#grid img", 4)
        body = {"model": "vae-rgb-tiny", "n": 4, "seed": 5}
        assert (
            session.sources("#grid img") == session.api.post("/sample", json=body).json()["images"]
        )
        assert page.locator("#grid img").evaluate_all(COLOURED) == [True] * 4

        page.fill("#scale", "2")
        page.fill("#columns", "2")  # one PNG grid, in colour
        page.click("#sample-form button[type=submit]")
        expect(page.locator("#grid img")).to_have_count(1)
        session.assert_rendered("#grid img", 1)
        grid = session.api.post(
            "/sample", json={**body, "scale": 2, "columns": 2}, headers={"Accept": "image/png"}
        ).content
        assert session.sources("#grid img") == [base64.b64encode(grid).decode()]
        assert _pixels(session.sources("#grid img")[0]).shape == (132, 132, 3)
        assert page.locator("#grid img").evaluate_all(COLOURED) == [True]

        # A colour photo of another size is scaled to the model's 32x32 and stays in colour.
        rng = np.random.default_rng(0)
        blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        photo = _png(blocks, tmp_path / "photo.png")  # 64 wide, 48 high
        page.set_input_files("#upload", photo)
        expect(page.locator("#original-caption")).to_have_text(
            "photo.png, scaled from 64×48 to 32×32"
        )
        session.assert_rendered("#original", 1)
        (sent,) = session.sources("#original")
        assert _pixels(sent).shape == (32, 32, 3)
        assert page.locator("#original").evaluate_all(COLOURED) == [True]
        page.click("#reconstruct")
        session.assert_rendered("#reconstruction", 1)
        expected = session.api.post(
            "/reconstruct", json={"model": "vae-rgb-tiny", "images": [sent]}
        ).json()["images"]
        assert session.sources("#reconstruction") == expected
        assert page.locator("#reconstruction").evaluate_all(COLOURED) == [True]

        # An RGB PNG of the model's size goes as it is.
        exact = _png(blocks[:32, :32], tmp_path / "exact.png")
        page.set_input_files("#upload", exact)
        expect(page.locator("#original-caption")).to_have_text("exact.png, 32×32")
        assert session.sources("#original") == [base64.b64encode(exact.read_bytes()).decode()]

        # The same colour image for a grayscale model: made gray by luma on the page.
        session.open("vae-tiny")
        expect(page.locator("#upload-hint")).to_have_text(
            "It is scaled to 28×28, the model's image size, and sent grayscale."
        )
        page.set_input_files("#upload", _png(blocks[:28, :28], tmp_path / "small.png"))
        expect(page.locator("#original-caption")).to_have_text("small.png, 28×28, made grayscale")
        (gray,) = session.sources("#original")
        luma = np.asarray(Image.fromarray(blocks[:28, :28]).convert("L")).astype(int)
        assert np.abs(_pixels(gray).astype(int) - luma[..., None]).max() <= 1
        page.click("#reconstruct")
        session.assert_rendered("#reconstruction", 1)
        assert page.locator("#reconstruction").evaluate_all(COLOURED) == [False]
        session.assert_console_clean()
