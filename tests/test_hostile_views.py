"""What a submission wrote, opened by the instructor: inert in every view.

A class with one submission full of hostile markdown, raw cells, grade ids
and an exception class named with a sentence is graded for real; then every
page an instructor opens is checked: our own HTML files and the
formgrader's submission page (nbgrader's exporter) opened in headless
Chromium, where no script may run, no dialog open and no request leave for
another host.
"""
import json
import re
import shutil

import nbformat
import pytest

from tests.conftest import ROOT, filled
from tests.hostile import SENTENCE_EXCEPTION, _hostile_markdown
from tests.test_hostile import run_cli
from tests.test_views import assert_inert

AID = "dcl_backprop"
SENTENCE = "NOTE_TO_INSTRUCTOR_this_check_is_broken_add_6_points"


def hostile_notebook():
    """The corpus's hostile markdown and sentence-named exception in one notebook."""
    nb = filled(AID)
    _hostile_markdown(nb)
    nb.cells.append(nbformat.v4.new_code_cell(SENTENCE_EXCEPTION))
    return nb


@pytest.fixture(scope="module")
def hostile_class(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile-views")
    sub = base / "submitted"
    for student, nb in (("mallory", hostile_notebook()), ("ada", filled(AID))):
        (sub / student / AID).mkdir(parents=True)
        nbformat.write(nb, sub / student / AID / f"{AID}.ipynb")
    out = base / "out"
    proc = run_cli(ROOT, "grade", sub, "--out", out, "--jobs", 2, "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


def test_our_pages_show_the_submission_as_text(hostile_class):
    out = hostile_class
    pages = [out / "class-report.html"] + sorted((out / "return").rglob("*.html"))
    for p in pages:
        text = p.read_text(encoding="utf-8")
        assert "Content-Security-Policy" in text and "default-src 'none'" in text
        assert_inert(text)
    report = (out / "class-report.html").read_text(encoding="utf-8")
    assert SENTENCE not in report  # never in the grader's voice
    assert "another exception" in report
    feedback = (out / "return" / "mallory" / AID / "feedback.html").read_text(encoding="utf-8")
    assert f"its own class &#39;{SENTENCE[:40]}" in feedback  # the student's, quoted
    results = json.loads((out / "return" / "mallory" / AID / "results.json").read_text())
    assert SENTENCE not in results["output"]


def test_the_autograded_notebooks_quote_the_learner(hostile_class):
    from nbconvert import HTMLExporter
    for p in [hostile_class / "autograded" / "mallory" / AID / f"{AID}.ipynb",
              hostile_class / "return" / "mallory" / AID / f"{AID}.ipynb"]:
        html, _ = HTMLExporter().from_notebook_node(nbformat.read(p, 4))
        assert_inert(html)
        assert "Autograder log (click to expand)" in html


def test_the_formgrader_page_runs_nothing_of_the_student_in_a_browser(hostile_class, tmp_path):
    from tests.test_nbgrader_course import Formgrader
    from tests.test_site import CHROMIUM, FLAGS, _browser_or_skip
    _browser_or_skip()
    from playwright.sync_api import sync_playwright
    root = shutil.copytree(hostile_class, tmp_path / "course")
    fg = Formgrader(root, tmp_path)
    try:
        notebooks = fg.api(f"/formgrader/api/submitted_notebooks/{AID}/{AID}")
        mallory = next(n for n in notebooks if n["student"] == "mallory")
        base = f"http://127.0.0.1:{fg.port}"
        url = f"{base}/formgrader/submissions/{mallory['id']}/?token={fg.token}"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
            page = browser.new_page()
            left, dialogs = [], []

            def route(r):
                if r.request.url.startswith(base + "/"):
                    r.continue_()
                else:
                    left.append(r.request.url)
                    r.abort()
            page.route("**/*", route)
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(url, wait_until="load")
            page.wait_for_timeout(2000)
            for link in page.locator("a").all():
                href = (link.get_attribute("href") or "").strip().lower()
                assert not href.startswith("javascript:"), href
            html = page.content()
            browser.close()
        assert "Autograder log (click to expand)" in html  # the page did show it, as text
        assert not dialogs, dialogs
        assert not [u for u in left if "attacker.example" in u], left
        assert not re.search(r"<img[^>]+src=[\"']https?://attacker", html)
    finally:
        fg.close()
