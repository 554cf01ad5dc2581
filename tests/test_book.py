"""The built book: no warnings, nothing broken or unreachable, no solution code, self-contained.

The site is built once per session (the `site` fixture of conftest.py) and
shared with the browser tests of test_site.py.
"""
import ast
import functools
import html as htmllib
import inspect
import importlib
import json
import re
import textwrap
import zipfile
from pathlib import Path
from urllib.parse import urljoin, urlsplit, unquote

import pytest
from bs4 import BeautifulSoup

from autograder import course
from tests.conftest import ROOT, chapter_pages, toc

SITE = "http://site.invalid/"   # a base to resolve links against; never contacted
# a host name after // (protocol-relative or with a scheme): a dot and a top-level domain
REMOTE = re.compile(r"(?:\b[a-z][a-z0-9+.-]*:)?//[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}", re.I)
SKIP_SCHEMES = ("mailto:", "tel:", "javascript:", "data:", "blob:")


def exercises():
    """Assignment ids of the committed learner notebooks."""
    return sorted(p.stem for p in course.EXERCISES.glob("*/*.ipynb") if p.stem == p.parent.name)


def pages(html):
    """Every HTML page of the site (not the theme's templates under _static)."""
    return sorted(p for p in html.rglob("*.html")
                  if p.relative_to(html).parts[0] not in ("_static", "_sources"))


@functools.lru_cache(maxsize=None)
def soup(path):
    return BeautifulSoup(Path(path).read_text(encoding="utf-8"), "html.parser")


def url_of(html, path):
    return urljoin(SITE, path.relative_to(html).as_posix())


def local_file(html, url):
    """The file a same-site URL points at, or None for another host."""
    parts = urlsplit(url)
    if f"{parts.scheme}://{parts.netloc}/" != SITE:
        return None
    target = html / unquote(parts.path.lstrip("/"))
    return target / "index.html" if parts.path.endswith("/") else target


def test_book_builds_without_warnings(site):
    if site.returncode is None:
        pytest.skip("COURSE_SITE_HTML is set: testing a site built elsewhere")
    problems = [line for line in site.log.splitlines() if re.search(r"WARNING|ERROR|Error", line)]
    assert site.returncode == 0, "\n".join(problems[:60]) + "\n...\n" + site.log[-4000:]


def test_every_chapter_and_exercise_is_reachable_from_the_table_of_contents(site):
    docs = [doc for doc, _, _ in toc()]
    missing = [doc for doc in docs if not (site.html / f"{doc}.html").exists()]
    assert not missing, f"pages of _toc.yml not built: {missing}"
    # The sidebar of every page links every entry of _toc.yml.
    for doc in docs:
        page = site.html / f"{doc}.html"
        nav = soup(page).select_one("nav.bd-docs-nav")
        assert nav is not None, f"{doc}: no navigation sidebar"
        linked = {str(f.relative_to(site.html).with_suffix(""))
                  for a in nav.select("a[href]")
                  if (f := local_file(site.html, urljoin(url_of(site.html, page), a["href"])))}
        assert set(docs) <= linked, f"{doc}: the sidebar misses {sorted(set(docs) - linked)}"
    # No page is built that the table of contents does not reach.
    built = {str(p.relative_to(site.html).with_suffix("")) for p in pages(site.html)}
    orphans = built - set(docs) - {"index", "genindex", "search"}
    assert not orphans, f"pages outside _toc.yml: {sorted(orphans)}"
    # Every exercise notebook is offered, unchanged, from a page of the table of contents;
    # a chapter named like an exercise offers that exercise.
    offered = {}
    for doc in docs:
        page = site.html / f"{doc}.html"
        for a in soup(page).select("a.download[href]"):
            target = local_file(site.html, urljoin(url_of(site.html, page), a["href"]))
            assert target is not None and target.is_file(), f"{doc}: broken download {a['href']}"
            offered.setdefault(target.name, target)
            if doc.rsplit("/", 1)[-1] in exercises() and target.suffix == ".ipynb":
                assert target.stem == doc.rsplit("/", 1)[-1], f"{doc} offers {target.name}"
    for aid in exercises():
        assert f"{aid}.ipynb" in offered, f"no page of _toc.yml offers the exercise {aid}"
        assert offered[f"{aid}.ipynb"].read_bytes() == \
            (course.EXERCISES / aid / f"{aid}.ipynb").read_bytes(), f"{aid}: stale download"


def test_internal_links_and_anchors_resolve(site):
    broken = []
    for page in pages(site.html):
        base = url_of(site.html, page)
        for tag in soup(page).find_all(True):
            for attr in ("href", "src"):
                ref = tag.get(attr)
                if not ref or ref.startswith(SKIP_SCHEMES) or ref == "#":
                    continue
                url = urljoin(base, ref)
                target = local_file(site.html, url)
                if target is None:
                    continue   # another host: links are allowed, resources are tested below
                name = page.relative_to(site.html)
                if not target.exists():
                    broken.append(f"{name}: {attr}={ref} (no file)")
                    continue
                anchor = urlsplit(url).fragment
                if anchor and target.suffix == ".html":
                    if not soup(target).find(id=unquote(anchor)) and \
                            not soup(target).find(attrs={"name": unquote(anchor)}):
                        broken.append(f"{name}: {attr}={ref} (no anchor)")
    assert not broken, "\n".join(broken[:50])


def test_pages_load_nothing_from_other_hosts(site):
    """Scripts, styles, images and fonts come from the site itself (links may leave it)."""
    found = []
    for page in pages(site.html):
        for tag in soup(page).find_all(True):
            for attr, value in tag.attrs.items():
                if (tag.name == "a" and attr == "href") or attr.startswith("xmlns"):
                    continue
                for v in value if isinstance(value, list) else [value]:
                    if REMOTE.search(v):
                        found.append(f"{page.relative_to(site.html)}: <{tag.name} {attr}={v[:120]}>")
            if tag.name in ("script", "style") and tag.string and REMOTE.search(tag.string):
                found.append(f"{page.relative_to(site.html)}: <{tag.name}> "
                             f"{REMOTE.search(tag.string).group(0)}")
    # stylesheets: url(...) and @import of another host, fonts included
    remote_css = re.compile(r"(?:url\(\s*['\"]?|@import\s+['\"])\s*" + REMOTE.pattern, re.I)
    for css in site.html.rglob("*.css"):
        for m in remote_css.finditer(css.read_text(encoding="utf-8", errors="replace")):
            found.append(f"{css.relative_to(site.html)}: {m.group(0)}")
    assert not found, "\n".join(found[:40])


def _strings(x):
    """Every string in parsed JSON; a list of strings (a notebook cell's lines) joined."""
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _strings(v)
    elif isinstance(x, list):
        if all(isinstance(i, str) for i in x):
            yield "".join(x)
        else:
            for v in x:
                yield from _strings(v)


def _site_text(html):
    """{file: text} for every text file of the site; HTML without tags, notebooks as their strings."""
    texts = {}
    for path in html.rglob("*"):
        if not path.is_file():
            continue
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue   # images, fonts
        if path.suffix == ".html":
            raw = htmllib.unescape(re.sub(r"<[^>]*>", "", raw))   # highlighted code is split by tags
        elif path.suffix in (".ipynb", ".json"):
            raw = "\n".join(_strings(json.loads(raw)))
        texts[path.relative_to(html)] = "\n".join(line.strip() for line in raw.splitlines())
    return texts


def _reference_functions():
    """(qualified name, source, body lines) of every function in solutions/*.py."""
    for path in sorted((ROOT / "solutions").glob("*.py")):
        module = importlib.import_module(f"solutions.{path.stem}")
        tree = ast.parse(path.read_text())
        lines = path.read_text().splitlines()
        defs = [(None, n) for n in tree.body] + \
               [(c.name, n) for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body]
        for owner, node in defs:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            if not body:
                continue
            obj = getattr(module, owner) if owner else module
            source = textwrap.dedent(inspect.getsource(getattr(obj, node.name)))
            code = [line.strip() for line in lines[body[0].lineno - 1:node.end_lineno]]
            yield f"{path.stem}.{owner + '.' if owner else ''}{node.name}", source, code


def _given_to_learners():
    """Sources of the `given` cells of every assignment (helpers learners may read)."""
    return ["\n".join(line.strip() for line in cell.source.splitlines())
            for aid in course.assignments() for cell in course.load(aid).cells
            if cell.kind == "given"]


def test_no_reference_solution_code_anywhere_in_the_site(site):
    """No body line (25 characters or more, docstring aside) of a reference function is published.

    Exempt: functions handed to learners in a later notebook's `given` cell,
    lines such a cell shows anyway (`z = np.asarray(z, dtype=np.float64)`), and
    lines the published docstrings of the answer cells spell out.
    """
    given = _given_to_learners()
    shown = {line for cell in given for line in cell.splitlines()}
    # Docstrings of the answer cells are published on purpose: they are the spec.
    shown |= {line.strip() for aid in course.assignments() for cell in course.load(aid).cells
              if cell.kind == "answer"
              for node in ast.parse(cell.source).body if isinstance(node, ast.FunctionDef)
              for line in (ast.get_docstring(node) or "").splitlines()}
    texts = _site_text(site.html)
    leaks, checked = [], 0
    for name, source, code in _reference_functions():
        stripped = "\n".join(line.strip() for line in source.splitlines())
        if any(stripped in cell for cell in given):
            continue
        for line in code:
            if len(line) < 25 or line in shown:
                continue
            checked += 1
            leaks += [f"{file}: {name}: {line}" for file, text in texts.items() if line in text]
    assert checked > 50, "found almost no reference code to look for: is solutions/ empty?"
    assert not leaks, ("reference solution code in the built site (file: function: line); "
                       "reword the page or notebook cell that shows it:\n" + "\n".join(leaks[:40]))


@pytest.mark.parametrize("doc", chapter_pages())
def test_chapter_shows_prerequisites_goals_time_and_questions_with_hidden_answers(site, doc):
    article = soup(site.html / f"{doc}.html").select_one("article.bd-article")
    first = article.select_one("div.admonition")
    assert first is not None, f"{doc}: no box at the top"
    intro = first.get_text(" ", strip=True).lower()
    for item in ("prerequisites", "learning goals", "estimated time"):
        assert item in intro, f"{doc}: the first box does not show '{item}'"
    questions = [box for box in article.select("div.admonition")
                 if (t := box.select_one(".admonition-title"))
                 and t.get_text(strip=True).lower() == "check your understanding"]
    assert questions, f"{doc}: no 'Check your understanding'"
    hidden = [box for box in questions
              if (d := box.select_one("details")) is not None and not d.has_attr("open")]
    assert hidden, f"{doc}: no 'Check your understanding' with a hidden answer"


def _get_started():
    """The docname of the Get started page in _toc.yml (None if there is none)."""
    return next((doc for doc, _, _ in toc() if doc.rsplit("/", 1)[-1] == "get_started"), None)


def _links_to(html, page, node, doc):
    """Whether `node` of `page` holds a link to the page `doc`."""
    return any(local_file(html, urljoin(url_of(html, page), a["href"])) == html / f"{doc}.html"
               for a in node.select("a[href]"))


def test_introduction_links_the_get_started_page(site):
    start = _get_started()
    assert start, "no page book/get_started.md in _toc.yml"
    root = toc()[0][0]
    page = site.html / f"{root}.html"
    assert _links_to(site.html, page, soup(page).select_one("article.bd-article"), start), \
        f"{root} does not link {start}"


@pytest.mark.parametrize("doc", chapter_pages())
def test_chapter_links_the_get_started_page_from_both_exercise_boxes(site, doc):
    """From the opening box (which offers the notebook) and from the Exercise section."""
    start = _get_started()
    page = site.html / f"{doc}.html"
    article = soup(page).select_one("article.bd-article")
    assert _links_to(site.html, page, article.select_one("div.admonition"), start), \
        f"{doc}: the box at the top does not link {start}"
    # the heading's text without its section number ("1.8.") and permalink ("#")
    exercise = next((h.find_parent("section") for h in article.select("section > h2")
                     if re.sub(r"^[\d.]*", "", h.get_text(strip=True)).rstrip("#") == "Exercise"),
                    None)
    assert exercise is not None, f"{doc}: no section 'Exercise'"
    assert _links_to(site.html, page, exercise, start), \
        f"{doc}: the Exercise section does not link {start}"


def test_get_started_offers_every_notebook_in_one_zip_and_the_learner_requirements(site):
    start = _get_started()
    page = site.html / f"{start}.html"
    offered = [local_file(site.html, urljoin(url_of(site.html, page), a["href"]))
               for a in soup(page).select("article a.download[href]")]
    requirements = (ROOT / "learner" / "requirements.txt").read_bytes()
    zips = [f for f in offered if f.suffix == ".zip"]
    assert len(zips) == 1 and zips[0].is_file(), f"{start}: offers {offered}, not one zip"
    with zipfile.ZipFile(zips[0]) as zf:
        assert zf.testzip() is None
        members = {Path(name).name: zf.read(name) for name in zf.namelist()}
        folders = {Path(name).parts[0] for name in zf.namelist()}
    assert len(folders) == 1, f"the zip should unpack into one folder, not {folders}"
    assert set(members) == {f"{aid}.ipynb" for aid in exercises()} | {"requirements.txt"}, \
        sorted(members)
    for aid in exercises():
        assert members[f"{aid}.ipynb"] == \
            (course.EXERCISES / aid / f"{aid}.ipynb").read_bytes(), f"{aid}: stale in the zip"
    assert members["requirements.txt"] == requirements
    alone = [f for f in offered if f.name == "requirements.txt"]
    assert alone and alone[0].read_bytes() == requirements, \
        f"{start}: no download of learner/requirements.txt on its own"


def test_notation_page_and_glossary_exist_and_are_used(site):
    docs = [doc for doc, _, _ in toc()]
    for name in ("notation", "glossary"):
        assert any(doc.endswith(name) for doc in docs), f"no {name} page in _toc.yml"
    glossary = next(doc for doc in docs if doc.endswith("glossary"))
    terms = soup(site.html / f"{glossary}.html").select("dl.glossary > dt[id]")
    assert len(terms) >= 10, "the glossary defines fewer than 10 terms"
    used = [doc for doc in chapter_pages()
            if soup(site.html / f"{doc}.html").select(f'a[href*="{Path(glossary).name}.html#term-"]')]
    assert used, "no chapter links a glossary term"
