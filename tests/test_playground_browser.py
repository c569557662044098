"""The playground page at / in a real browser: Debian's headless Chromium, driven by Playwright.

The page is served by the session's real server (quick models) and calls its native JSON API. Mouse
strokes draw a "1" and a "0", the keyboard draws a "1", a file input takes a dark-on-light "0", and two
reviews are typed; each test asserts the label the page shows. A screenshot of each state is written to
tests/output/playground/ (gitignored), kept after the run for people and CI logs to look at.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT, repository_without_explain
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

OUTPUT = REPO_ROOT / "tests" / "output" / "playground"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, installed by `make install`
# No sandbox (root in CI) and nothing that reaches the network: the page must work offline.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMAGE_MODEL, TEXT_MODEL = "mnist-cnn", "imdb-lstm"
DESKTOP = {"width": 1100, "height": 900}
PHONE = {"width": 375, "height": 812}
POSITIVE = (
    "A wonderful, moving film. The acting is superb, the story is beautiful and I loved every minute; "
    "one of the best films I have seen in years. Highly recommended."
)
NEGATIVE = (
    "An awful, boring mess. The plot is stupid, the acting is terrible and the dialogue is worse; "
    "a complete waste of time and money. The worst film I have seen in years."
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium", pytrace=False)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(
    browser: Browser, server, viewport: dict[str, int], failed_status: int | None = None
) -> Iterator[Page]:
    """The playground in a fresh browser context; it fails the test on any script error or any
    request that leaves the server (a CDN, a font). ``failed_status``: the one HTTP status a test
    expects the page's calls to meet (Chromium logs each failed fetch as a console error)."""
    base = server.http_url()
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    expected = f"status of {failed_status}" if failed_status else None

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not (expected and expected in message.text):
            problems.append(message.text)

    page.on("console", console)
    page.on(
        "request",
        lambda request: request.url.startswith(base) or problems.append(f"left the server: {request.url}"),
    )
    page.goto(f"{base}/")
    page.wait_for_selector("#image-panel:not([hidden])")  # the model list arrived, an image model chosen
    wait_idle(page)
    yield page
    context.close()
    assert not problems, problems


@pytest.fixture
def page(browser: Browser, server) -> Iterator[Page]:
    yield from open_page(browser, server, DESKTOP)


@pytest.fixture
def phone(browser: Browser, server) -> Iterator[Page]:
    yield from open_page(browser, server, PHONE)


def wait_idle(page: Page) -> None:
    """Until no request is scheduled or in flight: the page then shows the answer to its last state."""
    page.wait_for_function("document.body.dataset.idle === 'true'", timeout=15_000)


def shown_label(page: Page) -> str:
    wait_idle(page)
    assert page.inner_text("#error") == ""
    return page.inner_text("#top-label")


def stroke(page: Page, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through ``points``, given as fractions of the pad's width and height."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for x, y in at[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


def one() -> list[tuple[float, float]]:
    """A "1" as people write it: a slightly slanted upright stroke."""
    return [(0.54 - 0.08 * t / 10, 0.15 + 0.7 * t / 10) for t in range(11)]


def zero() -> list[tuple[float, float]]:
    """A "0": an upright ellipse, closed."""
    return [
        (0.5 + 0.22 * math.sin(2 * math.pi * t / 24), 0.5 - 0.32 * math.cos(2 * math.pi * t / 24))
        for t in range(25)
    ]


# Per cell of the 28x28 image sent (the preview) and of the attribution map beside it: the input's
# grey level and the map's colour, classified as for (blue), against (red) or zero (white).
MAP_CELLS = """(() => {
  const read = (id) => document.getElementById(id).getContext('2d').getImageData(0, 0, 28, 28).data;
  const input = read('preview');
  const map = read('explain-map');
  const cells = [];
  for (let i = 0; i < 28 * 28; i += 1) {
    const [r, g, b] = [map[4 * i], map[4 * i + 1], map[4 * i + 2]];
    const kind = r === 255 && g === 255 && b === 255 ? 'zero' : b > r + 40 ? 'for' : r > b + 40 ? 'against' : 'faint';
    cells.push({ ink: input[4 * i], kind });
  }
  return cells;
})()"""


def map_cells(page: Page) -> list[dict[str, object]]:
    wait_idle(page)
    assert page.inner_text("#explain-error") == ""
    return page.evaluate(MAP_CELLS)


def assert_map_explains_the_stroke(page: Page, label: str) -> None:
    """Blue on the stroke, and nothing where the image is black: integrated gradients from a black
    baseline scale each pixel's gradient by its own level, so a black pixel has no vote at all."""
    cells = map_cells(page)
    on_ink = [cell["kind"] for cell in cells if int(cell["ink"]) > 64]
    off_ink = [cell["kind"] for cell in cells if cell["ink"] == 0]
    assert on_ink.count("for") >= 5, f"{on_ink.count('for')} blue cells of {len(on_ink)} on the stroke"
    assert set(off_ink) == {"zero"}, f"black input cells coloured: {sorted(set(off_ink))}"
    assert f"Why {label} (" in page.inner_text("#explain-status")
    assert "integrated gradients" in page.inner_text("#explain-status")
    assert f"class {label}:" in (page.get_attribute("#explain-map", "aria-label") or "")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def assert_tokens_highlight(page: Page, review: str, label: str) -> list[tuple[str, float]]:
    """The review's words, in order, each a span coloured by its score; the scores are returned."""
    wait_idle(page)
    assert page.inner_text("#explain-error") == ""
    spans = page.eval_on_selector_all(
        "#explain-tokens .token",
        "(spans) => spans.map((s) => [s.textContent, Number(s.dataset.score), getComputedStyle(s).backgroundColor])",
    )
    assert spans, "no highlighted token"
    tokens = [token for token, _, _ in spans]
    assert tokens == words(review)[: len(tokens)], tokens
    assert len(tokens) >= 10
    # A score under ~0.2% of the largest rounds to white paper (the page's scale is linear), so only the
    # tokens that weigh at least 1% of the largest must be visibly tinted.
    largest = max(abs(score) for _, score, _ in spans)
    weighty = [colour for _, score, colour in spans if abs(score) >= 0.01 * largest]
    assert weighty and all(colour != "rgb(255, 255, 255)" for colour in weighty)
    assert f"For {label}, most:" in page.inner_text("#tokens-summary")
    return [(token, score) for token, score, _ in spans]


def choose_model(page: Page, name: str) -> None:
    page.select_option("#model", name)
    wait_idle(page)


def test_drawn_digits_are_read_as_drawn(page: Page) -> None:
    choose_model(page, IMAGE_MODEL)
    stroke(page, one())
    assert shown_label(page) == "1"
    assert page.locator("#classes li").count() == 3  # top_k 3, as bars with probabilities
    assert page.inner_text("#latency").endswith(" ms")
    assert_map_explains_the_stroke(page, "1")
    page.screenshot(path=OUTPUT / "digit-1.png", full_page=True)

    page.click("#clear")
    wait_idle(page)
    assert page.inner_text("#summary") == "Draw a digit."
    assert {cell["kind"] for cell in map_cells(page)} == {"zero"}  # the map is cleared with the pad
    stroke(page, zero())
    assert shown_label(page) == "0"
    assert_map_explains_the_stroke(page, "0")
    page.screenshot(path=OUTPUT / "digit-0.png", full_page=True)


def test_reviews_are_read_as_written(page: Page) -> None:
    choose_model(page, TEXT_MODEL)
    assert page.is_hidden("#image-panel") and page.is_visible("#review")
    page.locator("#review").press_sequentially(POSITIVE[:60])  # answers update as one types
    page.locator("#review").fill(POSITIVE)
    assert shown_label(page) == "positive"
    positive = dict(assert_tokens_highlight(page, POSITIVE, "positive"))
    page.screenshot(path=OUTPUT / "review-positive.png", full_page=True)

    page.locator("#review").fill(NEGATIVE)
    assert shown_label(page) == "negative"
    assert page.locator("#classes li").count() == 2  # top_k 3 asked, the model has two classes
    negative = dict(assert_tokens_highlight(page, NEGATIVE, "negative"))
    page.screenshot(path=OUTPUT / "review-negative.png", full_page=True)
    # Each verdict's own words vote for it: the praise for "positive", the complaints for "negative".
    assert max(positive[w] for w in ("wonderful", "superb", "beautiful", "loved", "best")) > 0
    assert max(negative[w] for w in ("awful", "boring", "stupid", "terrible", "worst")) > 0


def test_keyboard_alone_picks_a_version_and_draws(page: Page) -> None:
    choose_model(page, IMAGE_MODEL)
    page.focus("#version")
    page.keyboard.press("ArrowDown")  # "newest" → version 1
    assert page.input_value("#version") == "1"
    page.focus("#pad")
    for _ in range(8):
        page.keyboard.press("ArrowUp")
    page.keyboard.press("Space")  # pen down
    for _ in range(16):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")  # pen up
    assert shown_label(page) == "1"
    assert "version 1" in page.inner_text("#summary")
    page.screenshot(path=OUTPUT / "keyboard-1.png", full_page=True)


def test_an_image_file_of_a_dark_digit_on_paper_is_inverted_and_read(page: Page) -> None:
    scan = Image.new("L", (200, 240), 235)  # a pencil "0" on light paper, as a phone photo would be
    ImageDraw.Draw(scan).ellipse((55, 40, 145, 200), outline=30, width=16)
    png = io.BytesIO()
    scan.save(png, format="PNG")
    choose_model(page, IMAGE_MODEL)
    page.set_input_files("#file", {"name": "zero.png", "mimeType": "image/png", "buffer": png.getvalue()})
    assert shown_label(page) == "0"
    # The paper became background: the 28x28 image sent has a black frame, as MNIST's digits do.
    frame = page.evaluate(
        """(() => {
             const pixels = document.getElementById('preview').getContext('2d').getImageData(0, 0, 28, 28).data;
             let sum = 0;
             for (let i = 0; i < 28; i += 1) sum += pixels[4 * i] + pixels[4 * (27 * 28 + i)];
             return sum;
           })()"""
    )
    assert frame == 0
    page.screenshot(path=OUTPUT / "file-0.png", full_page=True)


def test_every_control_is_labelled_and_results_are_announced(page: Page) -> None:
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select, textarea')]
             .filter((el) => el.labels.length === 0 && !el.getAttribute('aria-label')).map((el) => el.id)"""
    )
    assert unlabelled == []
    assert page.get_attribute("#summary", "aria-live") == "polite"
    assert page.get_attribute("#error", "role") == "alert"


def test_phone_width_fits_without_sideways_scrolling(phone: Page) -> None:
    stroke(phone, one())
    assert shown_label(phone) == "1"
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px screen"
    for element in ("#pad", "#explain-map"):
        box = phone.locator(element).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], element
    assert_map_explains_the_stroke(phone, "1")
    phone.screenshot(path=OUTPUT / "phone-375.png", full_page=True)


def test_a_model_without_the_explain_signature_shows_why_not_and_still_classifies(
    browser: Browser, quick_repository: Path, tmp_path: Path, private_server
) -> None:
    server = private_server(repository_without_explain(quick_repository, tmp_path / "repo"))
    server.wait_serving()
    for page in open_page(browser, server, DESKTOP, failed_status=400):
        stroke(page, one())
        assert shown_label(page) in {str(digit) for digit in range(10)}  # the bars are there
        message = page.inner_text("#explain-error")
        assert "classify-train export-signatures" in message, message
        assert message.endswith("(HTTP 400 FAILED_PRECONDITION)"), message
        assert page.inner_text("#explain-status") == ""
        assert {cell["kind"] for cell in page.evaluate(MAP_CELLS)} == {"zero"}
        page.screenshot(path=OUTPUT / "explain-unavailable.png", full_page=True)
