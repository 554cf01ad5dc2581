"""The built site in a real browser: headless Chromium driven by Playwright, cut off from the network.

The site (built once per session, see conftest.py) is served on 127.0.0.1;
every request to anything else is aborted and recorded, and a recorded
request fails the page.  For every page of the table of contents: no console
errors; math typeset by MathJax; figures decoded and showing something;
widgets drawn from their saved state, each slider and menu changing the
picture shown; the exercise notebook downloadable; answers hidden until
asked for; and the search finds each chapter.  Dark mode keeps the figures
readable.  axe-core (vendored with the site) finds no violation of the WCAG 2
A and AA rules on any page, and every image has alt text that says what it
shows.

Chromium comes from the system (Debian: apt-get install chromium
chromium-driver); Playwright never downloads a browser here.  Without it the
tests skip, except in CI (CI=true), where they fail.
"""
import functools
import http.server
import io
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from tests.conftest import ROOT, chapter_pages, toc

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = [doc for doc, _, _ in toc()]
CHAPTERS = chapter_pages()
WAIT_MS = 30_000   # generous: MathJax typesets hundreds of formulas on a loaded CI machine

# Every .math element holds typeset output, and MathJax reported no TeX error.
MATH_STATE = """() => {
  const math = Array.from(document.querySelectorAll('article .math'));
  return {total: math.length,
          typeset: math.filter(m => m.querySelector('mjx-container')).length,
          errors: Array.from(document.querySelectorAll('mjx-merror'))
                    .map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 5)};
}"""
# Every <img> of the article, whether it decodes, and whether it shows anything: a
# truncated PNG "decodes" to its full size but its missing rows are blank.  Figures
# are the images outside widgets.
IMAGE_STATE = """async () => Promise.all(Array.from(document.querySelectorAll('article img')).map(
  async i => {
    let decoded = true;
    try { await i.decode(); } catch (error) { decoded = false; }
    let drawn = false;
    if (decoded && i.naturalWidth > 0) {
      const canvas = document.createElement('canvas');
      canvas.width = 96;
      canvas.height = Math.max(1, Math.round(96 * i.naturalHeight / i.naturalWidth));
      const context = canvas.getContext('2d');
      context.drawImage(i, 0, 0, canvas.width, canvas.height);
      const px = context.getImageData(0, 0, canvas.width, canvas.height).data;
      let low = 255, high = 0;
      for (let k = 0; k < px.length; k += 4) {
        if (px[k + 3] < 128) continue;   // transparent: nothing drawn there
        const y = 0.299 * px[k] + 0.587 * px[k + 1] + 0.114 * px[k + 2];
        low = Math.min(low, y);
        high = Math.max(high, y);
      }
      drawn = high - low > 32;   // lines or text on a background
    }
    return {src: i.currentSrc.slice(0, 80), decoded: decoded && i.naturalWidth > 0, drawn,
            figure: !!i.closest('figure') && !i.closest('.jupyter-widgets')};
  }))"""
# The rendered widget views, one per saved view; an explorer is a VBox of controls above images.
WIDGET_STATE = """() => ({
  views: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
  rendered: document.querySelectorAll('.widget-subarea > .jupyter-widgets').length,
  errors: document.querySelectorAll('.jupyter-widgets-error-widget').length})"""
# The one image an explorer shows, as size and a digest of its pixels (None if none is shown).
SHOWN_IMAGE = """(box) => {
  const shown = Array.from(box.querySelectorAll('img')).filter(i => i.checkVisibility());
  if (shown.length !== 1 || !shown[0].complete || shown[0].naturalWidth === 0) return null;
  const img = shown[0], canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let digest = 0;
  for (let k = 0; k < pixels.length; k++) digest = (digest * 31 + pixels[k]) | 0;
  return `${canvas.width}x${canvas.height}:${digest}`;
}"""


def _browser_or_skip():
    """Playwright and a system Chromium, or a skip (a failure in CI) saying how to get them."""
    try:
        import playwright.sync_api  # noqa: F401
        problem = None if CHROMIUM.exists() else (
            f"no Chromium at {CHROMIUM}: install it with "
            "`apt-get install chromium chromium-driver` (or set CHROMIUM=/path/to/chromium)")
    except ImportError:
        problem = "Playwright for Python is missing: pip install -r requirements.txt"
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run in CI: {problem}")
        pytest.skip(f"browser tests skipped: {problem}")


@pytest.fixture(scope="module")
def server(site):
    """The built site on http://127.0.0.1:<free port>."""
    if not (site.html / "index.html").exists():
        pytest.fail(f"no built site at {site.html}: see test_book.py::test_book_builds_without_warnings")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site.html)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


@dataclass
class Browser:
    context: object
    base: str
    escaped: list = field(default_factory=list)   # requests for other hosts, aborted

    def route(self, target, record):
        """Let requests to the site through; abort and record every other."""
        def handle(route):
            url = route.request.url
            if url.startswith(self.base + "/"):
                route.continue_()
            else:
                record.append(url)
                route.abort()
        target.route("**/*", handle)


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    _browser_or_skip()
    from playwright.sync_api import sync_playwright
    playwright = sync_playwright().start()
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM),
        headless=True, args=FLAGS, accept_downloads=True,
        viewport={"width": 1280, "height": 900})
    b = Browser(context, server)
    b.route(context, b.escaped)   # whatever a page's own route does not see (workers ...)
    yield b
    context.close()
    playwright.stop()


@dataclass
class Loaded:
    page: object
    errors: list = field(default_factory=list)     # console errors, uncaught exceptions, HTTP errors
    escaped: list = field(default_factory=list)    # requests for other hosts


def open_page(browser, path):
    """A page loaded with its events recorded, after MathJax and the widgets have settled."""
    page = browser.context.new_page()
    loaded = Loaded(page)
    browser.route(page, loaded.escaped)
    page.on("console", lambda m: m.type == "error" and loaded.errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: loaded.errors.append(f"exception: {e}"))
    page.on("response", lambda r: r.status >= 400 and loaded.errors.append(f"HTTP {r.status}: {r.url}"))
    page.goto(f"{browser.base}/{path}", wait_until="load")
    # MathJax 3 typesets the page after load; its startup promise settles when it is done.
    page.evaluate("""async (ms) => {
      if (window.MathJax && MathJax.startup && MathJax.startup.promise)
        await Promise.race([MathJax.startup.promise, new Promise(done => setTimeout(done, ms))]);
    }""", WAIT_MS)
    try:   # the widget manager draws every saved view after load
        page.wait_for_function("""() => {
          const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]');
          return document.querySelectorAll('.widget-subarea > .jupyter-widgets').length >= views.length;
        }""", timeout=WAIT_MS)
    except Exception:
        pass   # the widget test says what is missing
    return loaded


@pytest.fixture(scope="module")
def pages(browser):
    """Each page of the table of contents, loaded once for all the checks that only read it."""
    cache = {}

    def get(doc):
        if doc not in cache:
            cache[doc] = open_page(browser, f"{doc}.html")
        return cache[doc]

    yield get
    for loaded in cache.values():
        loaded.page.close()


@pytest.mark.parametrize("doc", PAGES)
def test_page_loads_without_errors_and_stays_on_the_machine(pages, doc):
    loaded = pages(doc)
    assert not loaded.escaped, f"{doc} asked other hosts for: {loaded.escaped}"
    assert not loaded.errors, f"{doc}:\n" + "\n".join(loaded.errors[:20])


@pytest.mark.parametrize("doc", PAGES)
def test_math_is_typeset(pages, doc):
    state = pages(doc).page.evaluate(MATH_STATE)
    if doc in CHAPTERS:
        assert state["total"] > 0, f"{doc}: a chapter without a single formula?"
    assert state["typeset"] == state["total"], \
        f"{doc}: only {state['typeset']} of {state['total']} formulas typeset by MathJax"
    assert not state["errors"], f"{doc}: TeX errors {state['errors']}"


def _declared_figures(doc):
    """Code cells of the page's source that declare a figure (mystnb: figure: ...)."""
    source = ROOT / f"{doc}.md"
    return len(re.findall(r"^mystnb:\s*\n\s+figure:", source.read_text(), re.M)) \
        if source.exists() else 0


@pytest.mark.parametrize("doc", PAGES)
def test_figures_are_present_and_decoded(pages, doc):
    images = pages(doc).page.evaluate(IMAGE_STATE)
    figures = sum(i["figure"] for i in images)
    declared = _declared_figures(doc)
    assert figures >= declared, f"{doc}: {figures} figures shown, its source declares {declared}"
    if doc in CHAPTERS:
        assert figures > 0, f"{doc}: a chapter without a figure"
    broken = [i["src"] for i in images if not i["decoded"]]
    assert not broken, f"{doc}: images not decoded: {broken}"
    blank = [i["src"] for i in images if not i["drawn"]]
    assert not blank, f"{doc}: images that show nothing (truncated?): {blank}"


def _expects_widgets(doc):
    return "explorer(" in (ROOT / f"{doc}.md").read_text() if (ROOT / f"{doc}.md").exists() else False


@pytest.mark.parametrize("doc", PAGES)
def test_widgets_render_from_saved_state(pages, doc):
    loaded = pages(doc)
    state = loaded.page.evaluate(WIDGET_STATE)
    if _expects_widgets(doc):
        assert state["views"] > 0, f"{doc}: its explorers left no widget view in the page"
    assert state["rendered"] == state["views"], \
        f"{doc}: {state['rendered']} of {state['views']} widgets drawn"
    assert state["errors"] == 0, f"{doc}: {state['errors']} widgets drawn as errors"
    for box in loaded.page.query_selector_all(".widget-subarea > .widget-vbox"):
        if box.query_selector("img"):
            assert box.evaluate(SHOWN_IMAGE), f"{doc}: an explorer shows no decoded image"


def _move(page, control):
    """Drive one control the way a reader would: drag a slider, pick another menu entry."""
    select = control.query_selector("select")
    if select:
        options = select.evaluate("s => s.options.length")
        current = select.evaluate("s => s.selectedIndex")
        select.select_option(index=(current + 1) % options)
        return
    handle = control.query_selector(".noUi-handle")
    track = control.query_selector(".noUi-base").bounding_box()
    handle.scroll_into_view_if_needed()
    start = handle.bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    # to the far end from where it is
    x = start["x"] + start["width"] / 2
    end = track["x"] + (1 if x > track["x"] + track["width"] / 2 else track["width"] - 1)
    page.mouse.move(end, track["y"] + track["height"] / 2, steps=8)
    page.mouse.up()


@pytest.mark.parametrize("doc", [d for d in PAGES if _expects_widgets(d)])
def test_widgets_respond_to_input(browser, doc):
    """Each control of each explorer changes the image shown, in the page, without a kernel."""
    loaded = open_page(browser, f"{doc}.html")   # a page of its own: this test changes it
    page = loaded.page
    try:
        boxes = page.query_selector_all(".widget-subarea > .widget-vbox")
        controls = 0
        for n, box in enumerate(boxes):
            for control in box.query_selector_all(
                    ":scope > .widget-hslider, :scope > .widget-dropdown"):
                before = box.evaluate(SHOWN_IMAGE)
                assert before, f"{doc}: explorer {n} shows no image"
                _move(page, control)
                try:   # another picture, not merely the same one drawn again
                    page.wait_for_function(
                        f"([box, before]) => {{ const now = ({SHOWN_IMAGE})(box);"
                        " return now !== null && now !== before; }",
                        arg=[box, before], polling=100, timeout=5_000)
                except Exception:
                    label = control.evaluate("c => c.innerText.split('\\n')[0]")
                    pytest.fail(f"{doc}: explorer {n}: moving '{label}' did not change the image")
                controls += 1
        assert controls > 0, f"{doc}: no slider or dropdown found in its explorers"
        assert not loaded.errors, f"{doc}:\n" + "\n".join(loaded.errors[:20])
        assert not loaded.escaped, f"{doc} asked other hosts for: {loaded.escaped}"
    finally:
        page.close()


@pytest.mark.parametrize("doc", CHAPTERS)
def test_exercise_notebook_link_downloads_a_valid_notebook(pages, doc, tmp_path):
    page = pages(doc).page
    links = page.locator("article a.download[href$='.ipynb']")
    assert links.count() > 0, f"{doc}: no link to its exercise notebook"
    with page.expect_download(timeout=WAIT_MS) as info:
        links.first.click()
    download = info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    assert path.suffix == ".ipynb", path.name
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("language", "python") == "python"
    assert any(c.cell_type == "code" for c in nb.cells), f"{path.name}: no code cell"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_answers_are_hidden_until_asked_for(pages, doc):
    page = pages(doc).page
    question = page.locator("div.admonition:has(> .admonition-title:text-is('Check your understanding'))"
                            ).filter(has=page.locator("details")).first
    answer = question.locator("details .sd-summary-content").first
    assert not answer.is_visible(), f"{doc}: an answer is shown before it is asked for"
    question.locator("details > summary").first.click()
    answer.wait_for(state="visible", timeout=5_000)


@pytest.mark.parametrize("doc", CHAPTERS)
def test_search_finds_the_chapter(browser, doc):
    """Searching the longest word of a chapter's title lists that chapter."""
    text = re.sub(r"\A---\n.*?\n---\n", "", (ROOT / f"{doc}.md").read_text(), flags=re.S)
    title = re.search(r"^# (.+)$", text, re.M).group(1)   # the first heading, front matter or not
    word = max(re.findall(r"[A-Za-z]+", title), key=len).lower()
    loaded = open_page(browser, f"search.html?q={word}")
    page = loaded.page
    try:
        try:
            page.wait_for_function(
                "() => document.querySelectorAll('#search-results ul.search li a').length > 0",
                timeout=WAIT_MS)
        except Exception:
            summary = page.locator("#search-results").inner_text()
            pytest.fail(f"searching '{word}' found nothing: {summary[:300]}")
        found = page.eval_on_selector_all(
            "#search-results ul.search li a", "as => as.map(a => new URL(a.href).pathname)")
        assert f"/{doc}.html" in found, f"searching '{word}' did not list {doc}: {found}"
        assert not loaded.errors and not loaded.escaped, loaded.errors + loaded.escaped
    finally:
        page.close()


def _luminance(png_bytes):
    """Mean luminance in [0, 1] and the share of dark pixels (< 0.35) of a screenshot."""
    from PIL import Image
    counts = Image.open(io.BytesIO(png_bytes)).convert("L").histogram()
    total = sum(counts)
    mean = sum(level * n for level, n in enumerate(counts)) / (255 * total)
    return mean, sum(counts[:int(0.35 * 255)]) / total


def test_dark_mode_keeps_figures_readable(browser, site):
    """In dark mode the figures and the explorers' pictures stay light, with dark lines and text."""
    doc = CHAPTERS[0]
    loaded = open_page(browser, f"{doc}.html")
    page = loaded.page
    try:
        page.evaluate("() => { document.documentElement.dataset.mode = 'dark';"
                      " document.documentElement.dataset.theme = 'dark'; }")
        page.wait_for_timeout(300)   # let the theme's transitions finish
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        red, green, blue = (int(v) for v in re.findall(r"\d+", background)[:3])
        assert 0.299 * red + 0.587 * green + 0.114 * blue < 0.3 * 255, \
            f"the page did not switch to its dark theme (background {background})"
        for selector in ("figure img", ".widget-subarea img"):
            image = page.locator(f"article {selector}").first
            if image.count() == 0:
                continue
            image.scroll_into_view_if_needed()
            mean, dark = _luminance(image.screenshot())
            assert mean > 0.6, f"{selector}: a dark figure background in dark mode ({mean:.2f})"
            assert dark > 0.002, f"{selector}: no dark lines or text left on the figure"
        shot = site.html.parent / "screenshots" / f"dark-{doc.replace('/', '-')}.png"
        shot.parent.mkdir(exist_ok=True)
        page.locator("article figure").first.scroll_into_view_if_needed()
        page.screenshot(path=str(shot))
        print(f"dark-mode screenshot: {shot}")
    finally:
        page.close()


# axe-core, vendored with the site's other scripts (book/_ext/site_assets.py), on the
# WCAG 2.0 level A and AA rules.  One entry per rule broken, with the elements breaking it.
AXE = "_static/vendor/axe-core/axe.min.js"
AXE_RUN = """async () => {
  const result = await axe.run(document, {
    runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}, resultTypes: ['violations']});
  return result.violations.map(v => ({
    rule: v.id, impact: v.impact, help: v.help,
    elements: v.nodes.map(n => n.target.join(' ') + ': ' + n.html.slice(0, 120))}));
}"""
# What every image of the article says it shows (a file name or a URL says nothing).
ALT_TEXTS = """() => Array.from(document.querySelectorAll('article img')).map(
  i => ({src: i.currentSrc.slice(-60), alt: i.getAttribute('alt')}))"""


@pytest.mark.parametrize("doc", PAGES)
def test_page_has_no_accessibility_violations(browser, pages, doc):
    """axe-core finds no violation of WCAG 2 A/AA, widgets included, after they are drawn."""
    page = pages(doc).page
    page.add_script_tag(url=f"{browser.base}/{AXE}")
    violations = page.evaluate(AXE_RUN)
    found = [f"{v['rule']} ({v['impact']}: {v['help']}): {element}"
             for v in violations for element in v["elements"]]
    print(f"{doc}: {len(found)} accessibility violations")
    assert not found, f"{doc}: {len(found)} accessibility violations:\n" + "\n".join(found[:30])


@pytest.mark.parametrize("doc", PAGES)
def test_every_image_says_what_it_shows(pages, doc):
    """Figures and the explorers' pre-drawn pictures carry alt text, not a file name."""
    unsaid = [f"{i['src']}: alt={i['alt']!r}" for i in pages(doc).page.evaluate(ALT_TEXTS)
              if not i["alt"] or len(i["alt"].split()) < 4
              or re.search(r"\.(png|jpe?g|svg|gif)\b|^\S*/", i["alt"])]
    assert not unsaid, f"{doc}: images without a description:\n" + "\n".join(unsaid[:20])


def test_no_request_left_the_machine(browser):
    """Requests outside any page (workers, prefetches) were cut off too; none was made."""
    assert not browser.escaped, browser.escaped
