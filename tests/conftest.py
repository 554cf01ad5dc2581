"""Shared fixtures: the course's assignments, learner notebooks, a graded demo class, the built book."""
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import yaml

from autograder import course, model, notebooks, store

ROOT = course.ROOT
CONTRACT = ROOT / "book" / "contract.md"


def release(aid):
    return nbformat.read(course.EXERCISES / aid / f"{aid}.ipynb", as_version=4)


def filled(aid):
    return notebooks.fill_with_reference(release(aid), aid)


def records(out):
    """{(student, assignment): model.Record} of every record in OUT (the truth
    every view is rendered from: OUT/records/<student>/<assignment>.json)."""
    found = {}
    for path in sorted(Path(out).glob(f"{store.RECORDS}/*/*.json")):
        rec = model.loads(model.Record, path.read_text(encoding="utf-8"))
        assert path == store.record_path(out, rec.submission.student, rec.submission.assignment)
        found[(rec.submission.student, rec.submission.assignment)] = rec
    return found


def returned(out, student, aid):
    """The folder handed back to a student for one assignment."""
    return Path(out) / "return" / student / aid


def secret_names(out):
    """Names of the hidden checks in OUT's records that no visible check shares."""
    hidden, visible = set(), set()
    for rec in records(out).values():
        for c in rec.result.checks:
            (hidden if c.hidden else visible).add(c.name)
    assert hidden
    return hidden - visible


def hidden_line(checks):
    """What a learner may read of one test cell's hidden checks: a count."""
    hidden = [c for c in checks if c.hidden]
    return (f"Hidden checks on fresh random inputs: {sum(c.passed for c in hidden)} of "
            f"{len(hidden)} passed.")


def contract():
    """{assignment: {function: signature as the page writes it}} from the book's contract page.

    book/contract.md is the course's one list of graded functions: an
    assignment's section is a heading labelled ``(contract-<assignment>)=``
    and ends at the next heading; the first column of each table row gives
    one or more ``name(arguments)``.
    """
    found, current, label = {}, None, None
    for line in CONTRACT.read_text().splitlines():
        if line.startswith("## "):   # a section: an assignment's if its label names one
            current = label if label and (course.SOURCE / label).is_dir() else None
            if current:
                found[current] = {}
        elif current and line.startswith("| `"):
            for name, args in re.findall(r"`(\w+)\(([^`]*)\)`", line.split("|")[1]):
                found[current][name] = f"{name}({args})"
        m = re.fullmatch(r"\(contract-(\w+)\)=", line.strip())
        label = m.group(1) if m else None
    return found


@pytest.fixture(scope="session")
def curriculum_functions():
    """{assignment: [graded function names]} as the contract page lists them."""
    return {aid: list(functions) for aid, functions in contract().items()}


@pytest.fixture(scope="session")
def graded_demo(tmp_path_factory):
    """The demo class graded once through the real command line."""
    out = tmp_path_factory.mktemp("demo-grades")
    proc = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(ROOT / "demo" / "submitted"),
         "--out", str(out), "--timeout", "3", "--jobs", "2", "--quiet"],
        capture_output=True, text=True, cwd=ROOT)
    return proc, out


# --- The book: built once per session for tests/test_book.py and tests/test_site.py

@dataclass
class Site:
    html: Path        # the built site, <out>/_build/html
    returncode: int   # jupyter-book's exit status; None for a site built elsewhere
    log: str          # its output


def toc():
    """_toc.yml as [(docname, part caption, numbered)] in reading order, root first."""
    data = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = [(str(Path(data["root"]).with_suffix("")), None, False)]

    def walk(items, caption, numbered):
        for item in items:
            if "file" in item:
                entries.append((str(Path(item["file"]).with_suffix("")), caption, numbered))
            walk(item.get("sections", []), caption, numbered)

    for part in data.get("parts", []):
        walk(part.get("chapters", []), part.get("caption"), bool(part.get("numbered")))
    walk(data.get("chapters", []), None, False)
    return entries


def chapter_pages():
    """The numbered chapters of _toc.yml (the ones with an exercise), as docnames."""
    return [doc for doc, _, numbered in toc() if numbered]


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The book built from scratch (every notebook executed) with `-W -n --keep-going`.

    COURSE_SITE_HTML=<a built _build/html> tests that site instead, without
    building (quick while writing pages; the build test then skips).
    """
    given = os.environ.get("COURSE_SITE_HTML")
    if given:
        return Site(Path(given).resolve(), None, "")
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).parent / "jupyter-book"
    # the pages import the course (solutions/) even before `pip install -e .`
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run(
        [str(jb) if jb.exists() else "jupyter-book", "build", str(ROOT),
         "-W", "-n", "--keep-going", "--path-output", str(out)],
        capture_output=True, text=True, cwd=ROOT, env=env)
    return Site(out / "_build" / "html", proc.returncode, proc.stdout + proc.stderr)



# --- Test tiers: `make test-fast` deselects these (`-m "not slow"`); `make test` runs all

SLOW = {
    "test_book": "builds the whole book",
    "test_site": "drives the built site in Chromium",
    "test_learner_env": "makes a fresh virtual environment",
    "test_hostile": "grades the hostile corpus in fenced sandboxes",
    "test_cluster": "starts Dask clusters",
    "test_parity": "runs every notebook through a Jupyter kernel",
    "test_learner_mode": "runs every notebook top to bottom in a Jupyter kernel",
    "test_nbgrader_course": "runs nbgrader's tools and a Jupyter server",
    "test_hostile_views": "opens the formgrader in Chromium",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rpartition(".")[2] in SLOW:
            item.add_marker(pytest.mark.slow)
