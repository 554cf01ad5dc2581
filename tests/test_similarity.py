"""The similarity report (autograder/similarity.py) on a small class made here.

The class (tests/similarity_class.py): four students who wrote six graded
functions on their own, three disguised copies of them, two who pasted the
reference, two untouched notebooks and one nearly empty one.  The copies
must be the top pairs, the pasted references flagged against "reference"
only, the untouched notebooks in no pair; the report must be escaped,
offline, fair in its words, and accessible in a browser (axe-core).
"""
import csv
import io
import os
import random
import re
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import __main__ as cli
from autograder import course, similarity
from tests.conftest import ROOT, filled, release
from tests.similarity_class import AID, COPIES, FUNCTIONS, HOSTILE, INDEPENDENT

PASTED = ["ivy", "kim"]          # the reference, pasted whole
UNTOUCHED = ["lee", "max"]       # the release notebook as is
NEARLY_EMPTY = "nia"             # one line of her own


def notebook(answers, order_seed=None):
    """The release notebook with these answer cells ({function: source}); the
    answer cells shuffled among themselves when order_seed is given."""
    nb = release(AID)
    for cell in nb.cells:
        gid = course.grade_id(cell)
        if gid and gid.startswith("answer_") and gid[len("answer_"):] in answers:
            cell.source = answers[gid[len("answer_"):]]
    if order_seed is not None:
        slots = [i for i, c in enumerate(nb.cells) if (course.grade_id(c) or "").startswith("answer_")]
        cells = [nb.cells[i] for i in slots]
        random.Random(order_seed).shuffle(cells)
        for i, c in zip(slots, cells):
            nb.cells[i] = c
    return nb


def write(folder, student, nb):
    path = Path(folder) / student / AID / f"{AID}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    root = tmp_path_factory.mktemp("similarity-class")
    submitted = root / "submitted"
    for name, answers in INDEPENDENT.items():
        write(submitted, name, notebook(answers))
    for name, (_, answers) in COPIES.items():
        write(submitted, name, notebook(answers, order_seed=len(name)))
    for name in PASTED:
        write(submitted, name, filled(AID))
    for name in UNTOUCHED:
        write(submitted, name, release(AID))
    write(submitted, NEARLY_EMPTY, notebook({"sigmoid": "def sigmoid(z):\n    return 0.5\n"}))
    return submitted


@pytest.fixture(scope="module")
def report(klass, tmp_path_factory):
    out = tmp_path_factory.mktemp("similarity-out")
    reports = similarity.run(klass, out, [AID])
    return reports[0], out


def test_the_class_is_what_it_says():
    """The hand-written implementations are correct (by the contract), so the
    students who did not copy are genuinely independent correct answers."""
    from solutions import dcl_backprop as ref
    rng = np.random.default_rng(1)
    students = dict(INDEPENDENT, **{k: v for k, (_, v) in COPIES.items()})
    for name, cells in students.items():
        assert sorted(cells) == sorted(FUNCTIONS), name
        ns = {"np": np}
        for source in cells.values():
            exec(source, ns)
        z = rng.normal(size=(4, 3)) * 50
        z[0, :2] = -800, 800
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # no overflow warning, as the contract says
            assert np.allclose(ns["sigmoid"](z), ref.sigmoid(z), rtol=1e-9, atol=0), name
        logits, y = rng.normal(size=(5, 4)), rng.integers(0, 4, 5)
        loss, d = ns["softmax_cross_entropy"](logits.copy(), y)
        want = ref.softmax_cross_entropy(logits.copy(), y)
        assert isinstance(loss, float) and np.isclose(loss, want[0]) and np.allclose(d, want[1]), name
        x = rng.normal(size=(3, 2))
        x0 = x.copy()
        g = ns["numerical_gradient"](lambda: float(np.sum(np.sin(x) * x)), x)
        assert np.array_equal(x, x0) and np.allclose(g, np.sin(x) + x * np.cos(x), atol=1e-6), name
        params = {"W1": rng.normal(size=(3, 2)), "b1": rng.normal(size=3)}
        grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
        for fn, extra in (("momentum_step", {}), ("adam_step", {"weight_decay": 0.01})):
            p1, s1, p2, s2 = params, {}, params, {}
            for _ in range(3):
                p1, s1 = ns[fn](p1, grads, s1, 0.1, **extra)
                p2, s2 = getattr(ref, fn)(p2, grads, s2, 0.1, **extra)
                assert all(np.allclose(p1[k], p2[k]) for k in params), (name, fn)
        pen, gr = ns["l2_penalty"](params, 0.3)
        want = ref.l2_penalty(params, 0.3)
        assert isinstance(pen, float) and np.isclose(pen, want[0]), name
        assert all(np.allclose(gr[k], want[1][k]) for k in params), name


def _key(p):
    return frozenset((p.a, p.b))


def test_disguised_copies_are_the_top_pairs(report):
    r, _ = report
    copies = {frozenset((name, source)) for name, (source, _) in COPIES.items()}
    top = [_key(p) for p in r.pairs[:len(copies)]]
    print("\n".join(f"{p.a} {p.b} {p.score:.3f} {p.functions[:2]}" for p in r.pairs[:12]))
    assert set(top) == copies, top
    assert {_key(p) for p in r.flagged} == copies
    for p in r.pairs[:len(copies)]:
        assert p.score >= 0.8, p
        # every function they both wrote is similar, not just the notebook as a whole
        assert {f for f, s in p.functions if s >= 0.5} == set(FUNCTIONS), p.functions
    assert all(p.score < similarity.THRESHOLD for p in r.pairs if _key(p) not in copies)
    # the independent students did write alike here and there, yet far below the copies
    assert r.below > 0 and max(r.histogram, key=lambda b: b.high if b.count else 0).count == 6


def test_pasted_reference_is_flagged_against_the_reference_only(report):
    r, _ = report
    flagged = {p.a for p in r.reference_flagged}
    assert flagged == set(PASTED), [(p.a, p.score) for p in r.reference]
    for p in r.reference:
        if p.a in PASTED:
            assert p.score == 1.0 and p.b == similarity.REFERENCE and p.kind == "reference"
    # the two who pasted the same code form no pair with each other or anyone
    assert not [p for p in r.pairs if {p.a, p.b} & set(PASTED)]


def test_untouched_and_nearly_empty_notebooks_form_no_pair(report):
    r, _ = report
    nobody = set(UNTOUCHED) | {NEARLY_EMPTY}
    assert not [p for p in r.pairs + r.reference if {p.a, p.b} & nobody]
    # the pasted references have nothing of their own left either
    assert r.too_little == len(nobody) + len(PASTED)
    assert r.compared == len(INDEPENDENT) + len(COPIES)


def test_scores_are_symmetric_and_within_bounds(klass):
    m = similarity.material(AID)
    found = similarity.collect(klass, m).answers

    def scores(answers):
        for a in answers:
            a.own = {}
        pairs = similarity.class_pairs(answers, m, len(answers)).pairs
        return {_key(p): (p.score, dict(p.functions)) for p in pairs}

    forward, backward = scores(found), scores(list(reversed(found)))
    assert forward == backward and forward
    assert all(0.0 < s <= 1.0 for s, _ in forward.values())
    assert similarity.score(10, 30, 5) == similarity.score(30, 10, 5) == pytest.approx((0.5 + 1 / 6) / 2)
    assert similarity.score(7, 7, 7) == 1.0


def test_normalisation_ignores_names_comments_docstrings_and_layout():
    a = '''def f(x, y):
    """Docstring."""
    total = x + y * 2  # a comment
    return total
'''
    b = '''def g(first, second):
    # another comment
    s = first + \\
        second * 7
    'a string used as a comment'
    return s
'''
    tokens = [t for t, _ in similarity.normalised(a)]
    assert tokens == [t for t, _ in similarity.normalised(b)]
    assert tokens == ["def", "V", "(", "V", ",", "V", ")", ":", ";", "V", "=", "V", "+", "V", "*",
                      "N", ";", "return", "V", ";"]
    # what renaming cannot change stays: attributes, builtins, keywords
    assert [t for t, _ in similarity.normalised("y = np.exp(len(x)) if x else None")] == [
        "V", "=", "V", ".", "exp", "(", "len", "(", "V", ")", ")", "if", "V", "else", "None", ";"]
    # text tokenize refuses is still read (a plain lexer), with its lines
    broken = similarity.normalised("def f(x:\n    return x +\n  y = '''open")
    assert [t for t, _ in broken][:4] == ["def", "V", "(", "V"] and broken[-1][1] == 3


def test_winnowing_finds_every_long_enough_common_run():
    """Any common run of K + WINDOW - 1 tokens gives a common fingerprint, wherever it sits."""
    rng = random.Random(3)
    vocab = [f"t{i}" for i in range(40)]
    t = similarity.K + similarity.WINDOW - 1
    for _ in range(200):
        run = [(rng.choice(vocab), 1) for _ in range(t)]
        a = [(rng.choice(vocab), 1) for _ in range(rng.randrange(60))] + run
        b = run + [(rng.choice(vocab), 1) for _ in range(rng.randrange(60))]
        a += [(rng.choice(vocab), 1) for _ in range(rng.randrange(60))]
        assert similarity.fingerprints(a) & similarity.fingerprints(b)
    # the density: about 2 / (WINDOW + 1) of the k-grams of a random text
    text = [(rng.choice(vocab), 1) for _ in range(5000)]
    share = len(similarity.fingerprints(text)) / (len(text) - similarity.K + 1)
    assert 1.5 / (similarity.WINDOW + 1) < share < 2.5 / (similarity.WINDOW + 1)


def test_csv_has_a_row_per_pair(report):
    r, out = report
    rows = list(csv.DictReader(io.StringIO((out / "similarity.csv").read_text(encoding="utf-8"))))
    assert set(similarity.CSV_COLUMNS) <= set(rows[0])
    assert len(rows) == len(r.pairs) + len(r.reference)
    by_pair = {frozenset((row["student_a"], row["student_b"])): row for row in rows}
    for name, (source, _) in COPIES.items():
        row = by_pair[frozenset((name, source))]
        assert row["assignment"] == AID and row["kind"] == "class" and float(row["score"]) >= 0.8
        assert len(row["top_functions"].split("; ")) == similarity.TOP_FUNCTIONS
    assert by_pair[frozenset(("ivy", "reference"))]["score"] == "1.000"


def test_html_is_escaped_offline_and_fairly_worded(report):
    r, out = report
    page = (out / "similarity.html").read_text(encoding="utf-8")
    # oli's code is shown side by side (oli and dev are flagged), as text
    assert "&lt;/pre&gt;&lt;/code&gt;&lt;script&gt;alert(" in page
    assert "<script" not in page.lower() and "<b>" not in page
    assert ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:\">") in page
    assert '<html lang="en">' in page
    words = re.sub(r"<pre>.*?</pre>", "", page, flags=re.S).lower()   # the report's own words
    assert not any(word in words for word in ("copied", "copy", "plagiar", "cheat"))
    for attr in ("src=", "href=\"http", "url(", "@import"):
        assert attr not in page, attr
    for name, (source, _) in COPIES.items():
        assert f"{name} and {source}" in page or f"{source} and {name}" in page
    # matching lines are marked on both sides
    assert page.count("<mark>") > 20


def test_what_every_notebook_shares_is_left_out():
    """The template's lines give no tokens; the release notebook's other cells
    and the book's code are in the shared material."""
    m = similarity.material(AID)
    for gid, stub in m.stubs.items():
        assert similarity.pieces(stub, gid, m.cell_functions[gid], m.graded, stub) == []
    nb = release(AID)
    checks = next(c.source for c in nb.cells if course.grade_id(c) == "checks")
    assert all(h in m.shared for h, _, _ in similarity.kgrams(similarity.normalised(checks)))
    book_code = similarity.code_blocks((ROOT / "book" / "dcl_backprop.md").read_text())
    assert book_code and all(h in m.shared for block in book_code
                             for h, _, _ in similarity.kgrams(similarity.normalised(block)))
    # the reference is compared, but not part of what every notebook shares
    ref = similarity.answer_pieces(m.reference, m)
    assert similarity.units(ref, m.shared) == m.reference_units and m.reference_units


def test_earlier_terms_pair_with_this_class_only(klass, tmp_path):
    """An earlier term's notebook like a student's of this term is paired with
    it; two earlier notebooks alike are not paired with each other."""
    earlier = tmp_path / "2025"
    write(earlier, "pat", notebook(COPIES["gus"][1]))       # ben's code, last year
    write(earlier, "quinn", notebook(COPIES["gus"][1]))     # the same, twice
    only_ana = tmp_path / "now"
    write(only_ana, "ben", notebook(INDEPENDENT["ben"]))
    write(only_ana, "ana", notebook(INDEPENDENT["ana"]))
    r = similarity.run(only_ana, tmp_path / "out", [AID], against=[earlier])[0]
    assert r.earlier == 2
    keys = {_key(p): p for p in r.pairs}
    for old in ("2025/pat", "2025/quinn"):
        assert keys[frozenset(("ben", old))].kind == "earlier term"
        assert keys[frozenset(("ben", old))].score >= 0.8
    assert frozenset(("2025/pat", "2025/quinn")) not in keys
    assert all(p.score < similarity.THRESHOLD for p in r.pairs if "ana" in (p.a, p.b))


def test_command_line_and_grade_flag(klass, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert cli.main(["similarity", str(klass), "--out", str(out), "--assignment", AID]) == 0
    assert (out / "similarity.csv").is_file() and (out / "similarity.html").is_file()
    assert "similarity.html" in capsys.readouterr().out

    # grade --similarity: the same report, at the top of OUT, after grading
    from autograder import classroom
    graded = tmp_path / "graded"

    def fake_grade_class(submitted, out, **kwargs):   # grading itself is tested elsewhere
        (Path(out) / "ana" / AID).mkdir(parents=True)
        return []
    monkeypatch.setattr(classroom, "grade_class", fake_grade_class)
    assert cli.main(["grade", str(klass), "--out", str(graded), "--similarity", "--quiet"]) == 0
    assert (graded / "similarity.html").is_file() and (graded / "similarity.csv").is_file()
    assert not list((graded / "ana").rglob("similarity*"))
    with pytest.raises(SystemExit):
        cli.main(["similarity", str(klass), "--out", str(out), "--assignment", "no_such"])
    with pytest.raises(SystemExit):   # this class is no earlier term
        cli.main(["similarity", str(klass), "--out", str(out), "--against", str(klass)])
    # never among the students' folders
    for inside in (klass, klass / "ana"):
        with pytest.raises(SystemExit):
            cli.main(["similarity", str(klass), "--out", str(inside)])
        assert not (inside / "similarity.html").exists()
    # a folder where the page goes (a student named so) is never written into
    blocked = tmp_path / "blocked"
    (blocked / "similarity.html").mkdir(parents=True)
    assert cli.main(["similarity", str(klass), "--out", str(blocked), "--assignment", AID]) == 2
    assert not list((blocked / "similarity.html").iterdir())
    assert "cannot write the similarity report" in capsys.readouterr().err


# --- In a browser: axe-core on the report --------------------------------------------

AXE_FILES = [ROOT / "book" / "_static" / "vendor" / "axe-core" / "axe.min.js",
             ROOT / "tools" / "vendor" / "node_modules" / "axe-core" / "axe.min.js"]


def test_report_has_no_accessibility_violations(report, tmp_path):
    """The page in headless Chromium, cut off from everything: it loads nothing,
    shows no error, and axe-core finds no WCAG 2 A/AA violation."""
    from tests.test_site import AXE_RUN, CHROMIUM, FLAGS, _browser_or_skip
    _browser_or_skip()
    axe = next((p for p in AXE_FILES if p.is_file()), None)
    if axe is None:
        problem = ("axe-core is not installed: build the book once (make book) or run "
                   "`npm ci` in tools/vendor")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser tests cannot run in CI: {problem}")
        pytest.skip(f"browser tests skipped: {problem}")
    from playwright.sync_api import sync_playwright
    _, out = report
    url = (out / "similarity.html").as_uri()
    requests, errors = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            # axe is injected as a script, which the page's own policy forbids
            page = browser.new_context(bypass_csp=True).new_page()
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))

            def handle(route):
                if route.request.url != url:
                    requests.append(route.request.url)
                    return route.abort()
                return route.continue_()
            page.route("**/*", handle)
            page.goto(url, wait_until="load")
            assert page.locator("h1").inner_text() == "Similarity between submissions"
            assert page.locator("svg[role=img]").count() == 1
            # the hostile text is shown as text, and no script of it ran
            assert any(HOSTILE in t for t in page.locator("pre").all_inner_texts())
            assert page.evaluate("document.scripts.length") == 0
            page.add_script_tag(content=axe.read_text(encoding="utf-8"))
            violations = page.evaluate(AXE_RUN)
        finally:
            browser.close()
    found = [f"{v['rule']} ({v['impact']}: {v['help']}): {e}" for v in violations
             for e in v["elements"]]
    assert not found, "\n".join(found[:30])
    assert not requests and not errors, (requests, errors)


def test_per_function_scores_from_the_shared_fingerprints_equal_the_direct_ones(klass):
    """The fast path of class_pairs (from what two notebooks share) against the
    plain comparison of every function's fingerprints."""
    m = similarity.material(AID)
    answers = similarity.collect(klass, m).answers
    similarity.class_pairs(answers, m, len(answers))
    compared = [a for a in answers if sum(map(len, a.own.values())) >= similarity.MIN_FINGERPRINTS]
    checked = 0
    for a in compared:
        for b in compared:
            if a is not b:
                shared = a.all() & b.all()
                fast = similarity.shared_function_scores(a.own, b.own, shared,
                                                         similarity.owners(a.own))
                assert fast == similarity.function_scores(a.own, b.own)
                checked += bool(fast)
    assert checked > 10


def test_reading_in_parallel_reads_the_same(klass, monkeypatch):
    m = similarity.material(AID)
    alone = similarity.collect(klass, m, jobs=1)
    monkeypatch.setattr(similarity, "PARALLEL_MIN", 0)
    together = similarity.collect(klass, m, jobs=2)
    assert [(a.label, a.sources, a.raw) for a in alone.answers] == \
        [(a.label, a.sources, a.raw) for a in together.answers]
    assert len(alone.answers) == 12 and alone.unreadable == together.unreadable == []


def test_the_hostile_corpus_is_read_without_harm(tmp_path):
    """Every submission of tests/hostile (broken files, odd cells, links, FIFOs,
    invalid names and text) goes through the report: nothing breaks, nothing
    is followed, and the page holds no markup of theirs."""
    from tests.hostile import AID as HOSTILE_AID, CASES, Context
    sub, out = tmp_path / "submitted", tmp_path / "out"
    ctx = Context(release(HOSTILE_AID), filled(HOSTILE_AID), tmp_path / "course", out, ROOT)
    for case in CASES:
        folder = sub / os.fsdecode(case.folder if case.folder is not None else case.name) / HOSTILE_AID
        folder.mkdir(parents=True)
        if case.layout:
            case.build(ctx, folder)
        else:
            (folder / f"{HOSTILE_AID}.ipynb").write_bytes(case.build(ctx))
    r = similarity.run(sub, out, [HOSTILE_AID])[0]
    assert r.compared + r.too_little + r.unreadable >= len(CASES) - 5   # absent: no notebook
    assert r.unreadable >= 1
    page = (out / "similarity.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert sorted(p.name for p in out.iterdir()) == ["similarity.csv", "similarity.html"]


def test_the_fallback_lexer_reads_valid_code_as_tokenize_does(monkeypatch):
    """For text tokenize refuses, a plain lexer takes over; on valid code the two
    give the same tokens, so a cell with one broken line compares as it should."""
    m = similarity.material(AID)
    sources = list(m.reference.values()) + [s for answers in INDEPENDENT.values()
                                            for s in answers.values()]
    sources += [s for _, answers in COPIES.values() for s in answers.values()]
    sources.append("x = 1e-8 + .5 * 0x1F - 2j + 1_000\ny = f(a,\n      b) + \\\n    c\n")
    want = [similarity.normalised(s) for s in sources]
    monkeypatch.setattr(similarity, "_raw_tokens", similarity._lex)
    assert [similarity.normalised(s) for s in sources] == want
