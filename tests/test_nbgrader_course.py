"""What an instructor with nbgrader habits does with our grades, and the class report.

The demo class is graded once (``graded_demo``); tests that change a course
work on a copy of it.  nbgrader's own tools run as an instructor runs them:
the formgrader in a real Jupyter server (its HTTP API, the one its pages
use), ``nbgrader export``, ``generate_feedback`` and ``zip_collect`` on the
command line.
"""
import csv
import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import nbformat
import pytest

from autograder import course, demo, model, nbgrader_course
from tests.conftest import ROOT, filled, hidden_line, records, release, secret_names

STUDENTS = ["ada", "brook", "cato", "dara", "emil"]


def nbgrader(*args, cwd):
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def grades(out):
    return {(r["student_id"], r["assignment"]): r
            for r in csv.DictReader(open(out / "grades.csv", encoding="utf-8"))}


def exported(course_root, tmp_path, name):
    target = tmp_path / name
    nbgrader("export", f"--to={target}", cwd=course_root)
    return {(r["student_id"], r["assignment"]): float(r["score"])
            for r in csv.DictReader(open(target, encoding="utf-8"))}


class Formgrader:
    """A Jupyter server started in a course root, with nbgrader's formgrader;
    ``api(path)`` calls its HTTP API as the formgrader's pages do."""

    def __init__(self, root, tmp_path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.token = "instructor"
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root",
             f"--port={self.port}", "--ip=127.0.0.1", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={root}"],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.api("/formgrader/api/status")
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError("the Jupyter server did not start")
                time.sleep(0.5)

    def get(self, path, data=None, method="GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method,
                                     data=None if data is None else json.dumps(data).encode(),
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode("utf-8")

    def api(self, path, data=None, method="GET"):
        return json.loads(self.get(path, data, method)[1])

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def demo_course(graded_demo, tmp_path):
    """A copy of the graded demo class's OUT (an nbgrader course root)."""
    proc, out = graded_demo
    assert proc.returncode == 0, proc.stderr
    return shutil.copytree(out, tmp_path / "course")


def test_an_instructor_takes_our_grades_into_the_formgrader(demo_course, tmp_path):
    """Grade, open the formgrader, look at a submission, add manual points and
    a comment, export with nbgrader, generate nbgrader's feedback, regrade:
    the formgrader shows our scores, the export and grades.csv agree, and
    the manual points and comment survive the regrading."""
    out = demo_course
    ours = grades(out)
    aid = course.assignments()[0]
    secret = secret_names(out)
    fg = Formgrader(out, tmp_path)
    try:
        listed = fg.api("/formgrader/api/assignments")
        assert sorted(a["name"] for a in listed) == course.assignments()
        for a in listed:
            assert a["max_score"] == course.load(a["name"]).max_score
            assert a["num_submissions"] == len(STUDENTS)
            subs = fg.api(f"/formgrader/api/submissions/{a['name']}")
            assert sorted(s["student"] for s in subs) == STUDENTS
            for s in subs:
                assert s["autograded"] and s["submitted"], s
                assert s["score"] == pytest.approx(float(ours[(s["student"], a["name"])]["score"]),
                                                   abs=1e-3)
        notebooks = fg.api(f"/formgrader/api/submitted_notebooks/{aid}/{aid}")
        assert sorted(n["student"] for n in notebooks) == STUDENTS
        assert all(n["index"] is not None for n in notebooks)  # their notebooks are found
        brook = next(n for n in notebooks if n["student"] == "brook")
        assert brook["failed_tests"] and not brook["needs_manual_grade"]
        # The grading page of one submission: our check results in its test cells.
        status, page = fg.get(f"/formgrader/submissions/{brook['id']}/")
        text = html.unescape(page)
        assert status == 200 and "✗ dense_backward" in text and "✓ " in text
        assert "Hidden checks on fresh random inputs:" in text
        assert not [name for name in secret if name in text]
        # Manual points on a test cell and a comment on an answer cell.
        cells = fg.api(f"/formgrader/api/grades?submission_id={brook['id']}")
        comments = fg.api(f"/formgrader/api/comments?submission_id={brook['id']}")
        assert {c["name"] for c in cells} == {c.grade_id for c in course.load(aid).tests}
        assert {c["name"] for c in comments} == {c.grade_id for c in course.load(aid).cells
                                                 if c.kind == "answer"}
        cell = next(c for c in cells if c["auto_score"] < c["max_score"])
        fg.api(f"/formgrader/api/grade/{cell['id']}", method="PUT",
               data={"manual_score": cell["max_score"], "extra_credit": None})
        answer = next(c for c in comments if c["name"] == "answer_dense_backward")
        fg.api(f"/formgrader/api/comment/{answer['id']}", method="PUT",
               data={"manual_comment": "Where does the 1/N belong?"})
        after = fg.api(f"/formgrader/api/submission/{aid}/brook")
        gain = cell["max_score"] - cell["auto_score"]
        assert after["score"] == pytest.approx(float(ours[("brook", aid)]["score"]) + gain,
                                               abs=1e-3)
    finally:
        fg.close()

    # nbgrader export: our scores, and brook's with the manual points.
    export = exported(out, tmp_path, "export.csv")
    assert set(export) == set(ours)
    for k, row in ours.items():
        want = float(row["score"]) + (gain if k == ("brook", aid) else 0.0)
        assert export[k] == pytest.approx(want, abs=1e-3), k

    # nbgrader's feedback, from the autograded notebooks and the gradebook.
    nbgrader("generate_feedback", aid, cwd=out)
    for student in STUDENTS:
        page = html.unescape((out / "feedback" / student / aid / f"{aid}.html").read_text())
        assert not [name for name in secret if name in page], student
        assert "grading_rng" not in page and "BEGIN HIDDEN" not in page
    page = html.unescape((out / "feedback" / "brook" / aid / f"{aid}.html").read_text())
    assert "Where does the 1/N belong?" in page and "✗ dense_backward" in page
    assert "Hidden checks on fresh random inputs:" in page

    # Regrading brook keeps the manual points (flagged for review, as nbgrader
    # does), and grades.csv then agrees with the gradebook and the export.
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade",
                           str(ROOT / "demo" / "submitted"), "--out", str(out), "--only", "brook",
                           "--timeout", "3", "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    regraded = grades(out)
    row = regraded[("brook", aid)]
    assert float(row["score"]) == pytest.approx(float(ours[("brook", aid)]["score"]) + gain,
                                                abs=1e-3)
    assert "manual grading" in row["message"]
    export = exported(out, tmp_path, "export2.csv")
    for k, r in regraded.items():
        assert export[k] == pytest.approx(float(r["score"]), abs=1e-3), k
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        g = gb.find_grade(cell["name"], aid, aid, "brook")
        assert g.manual_score == cell["max_score"] and g.needs_manual_grade
        assert gb.find_comment("answer_dense_backward", aid, aid, "brook").manual_comment \
            == "Where does the 1/N belong?"


def test_autograded_notebooks_show_the_checks_and_keep_nbgrader_metadata(graded_demo):
    """Each autograded notebook is valid, carries the release notebook's nbgrader
    metadata on its cells, the learner's code in the answer cells, and in each
    test cell the visible checks' lines and the count of hidden checks passed;
    no hidden check is named.  The course's source notebook has the hidden
    tests (instructors only); the release notebook has none."""
    _, out = graded_demo
    secret = secret_names(out)
    recs = records(out)
    for aid in course.assignments():
        rel = release(aid)
        rel_meta = {course.grade_id(c): c.metadata["nbgrader"] for c in rel.cells
                    if course.grade_id(c)}
        reference = {course.grade_id(c): c.source for c in filled(aid).cells}
        for student in STUDENTS:
            path = out / "autograded" / student / aid / f"{aid}.ipynb"
            # the student's copy is the same notebook
            assert (out / "return" / student / aid / f"{aid}.ipynb").read_bytes() == \
                path.read_bytes()
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)
            by_id = {course.grade_id(c): c for c in nb.cells if course.grade_id(c)}
            assert set(by_id) == set(rel_meta), (student, aid)
            for gid, cell in by_id.items():
                assert cell.metadata["nbgrader"] == rel_meta[gid]
            result = recs[(student, aid)].result
            for c in course.load(aid).tests:
                text = "".join(o.get("text", "") for o in by_id[c.grade_id].outputs)
                checks = [t for t in result.checks if t.cell == c.grade_id]
                assert checks or result.status is not model.Status.GRADED, (student, c.grade_id)
                for t in checks:
                    if not t.hidden:
                        mark = "✓" if t.passed else "✗"
                        assert f"{mark} {t.name}" in text, (student, t.name)
                if any(t.hidden for t in checks):
                    assert hidden_line(checks) in text, (student, c.grade_id)
            for c in course.load(aid).cells:
                if c.kind == "answer" and student == "ada":
                    assert by_id[c.grade_id].source == reference[c.grade_id]
                if c.kind == "answer" and student in ("cato", "dara"):
                    assert by_id[c.grade_id].source == rel.cells[
                        [course.grade_id(x) for x in rel.cells].index(c.grade_id)].source
            raw = json.dumps(nb)  # names as JSON strings, the same escapes on both sides
            assert not [name for name in secret if json.dumps(name)[1:-1] in raw]
            assert "grading_rng" not in raw and "BEGIN HIDDEN" not in raw
        dara = nbformat.read(out / "autograded" / "dara" / aid / f"{aid}.ipynb", as_version=4)
        assert "(unreadable)" in dara.cells[0].source and "not valid" in dara.cells[0].source
        source = (out / "source" / aid / f"{aid}.ipynb").read_text()
        released = (out / "release" / aid / f"{aid}.ipynb").read_text()
        if course.has_hidden(course.load(aid)):
            assert course.HIDDEN_BEGIN in source and course.HIDDEN_BEGIN not in released
    emil = nbformat.read(out / "autograded" / "emil" / "dcl_backprop" / "dcl_backprop.ipynb",
                         as_version=4)
    runaway = next(c for c in emil.cells if c.source == demo.RUNAWAY)
    assert "When graded, this cell raised" in runaway.outputs[-1]["text"]


def test_learner_markup_never_reaches_the_formgrader_as_html(tmp_path):
    """The learner's markdown is made inert unless it is the course's own, and
    of saved outputs only text and PNG/JPEG images are kept."""
    aid = course.assignments()[0]
    a = course.load(aid)
    nb = filled(aid)
    nb.cells.insert(3, nbformat.v4.new_markdown_cell("<script>alert(1)</script> *mine*"))
    code = nbformat.v4.new_code_cell("1")
    code.outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": "<script>alert(2)</script>", "application/javascript": "alert(3)",
        "image/svg+xml": "<svg onload='alert(4)'/>", "text/plain": "shown", "image/png": "iVBO"})]
    nb.cells.insert(4, code)
    result = model.Result(status=model.Status.GRADED, score=1.0, max_score=a.max_score,
                          notes=("<img src=x onerror=alert(5)>",))
    kept = nbgrader_course.autograded_notebook(a, nb, result)
    text = json.dumps(kept)
    for active in ("<svg", "text/html", "javascript", "svg+xml"):  # outputs: dropped
        assert active not in text, active
    assert '"text/plain": "shown"' in text and '"image/png": "iVBO"' in text
    # Markdown as nbconvert renders it for the formgrader and nbgrader's
    # feedback: the learner's markup and the notes show as text, never as HTML.
    from nbconvert.filters import markdown2html
    shown = "\n".join(markdown2html(c.source) for c in kept.cells if c.cell_type == "markdown")
    for active in ("<script", "<img", "<svg"):
        assert active not in shown, active
    assert "&lt;script&gt;alert(1)&lt;/script&gt; *mine*" in shown
    assert "&lt;img src=x onerror=alert(5)&gt;" in shown
    ours = [c.source for c in release(aid).cells if c.cell_type == "markdown"]
    assert [c.source for c in kept.cells if c.cell_type == "markdown" and c.source in ours] \
        == ours  # the course's own markdown stays as it is


def test_a_course_root_filled_by_zip_collect_is_graded_in_place(tmp_path):
    """An LMS download collected by ``nbgrader zip_collect`` into the course's
    submitted/ is graded with the course root as input and as OUT; the
    formgrader's API then counts the submissions as autograded at the
    times zip_collect recorded."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.apps.baseapp import NbGrader
    from nbgrader.coursedir import CourseDirectory
    aid = course.assignments()[0]
    root = tmp_path / "course"
    archive = root / "downloaded" / aid / "archive"
    archive.mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.FileNameCollectorPlugin.named_regexp = "
        r"r'.*/(?P<student_id>[a-z]+)_attempt_(?P<timestamp>\d{8}T\d{6})_(?P<file_id>.+)'" "\n")
    times = {"amy": "20261120T100000", "bob": "20261121T093000"}
    nbs = {"amy": filled(aid), "bob": demo._introduce(filled(aid), demo.BUGS[aid][:1])}
    with zipfile.ZipFile(archive / "lms-download.zip", "w") as z:
        for student, nb in nbs.items():
            z.writestr(f"{student}_attempt_{times[student]}_{aid}.ipynb", nbformat.writes(nb))
    nbgrader("zip_collect", aid, "--force", cwd=root)
    for student in nbs:
        assert (root / "submitted" / student / aid / f"{aid}.ipynb").is_file()
        assert (root / "submitted" / student / aid / "timestamp.txt").is_file()
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(root), "--out",
                           str(root), "--quiet", "--timeout", "10"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = grades(root)
    assert set(rows) == {("amy", aid), ("bob", aid)}
    a = course.load(aid)
    assert float(rows[("amy", aid)]["score"]) == a.max_score + a.extra_credit
    assert 0 < float(rows[("bob", aid)]["score"]) < a.max_score
    assert "named_regexp" in (root / "nbgrader_config.py").read_text()  # theirs, not replaced
    cwd = os.getcwd()
    os.chdir(root)  # nbgrader reads nbgrader_config.py from the working folder
    try:
        app = NbGrader()
        app.load_config_file()
        api = NbGraderAPI(coursedir=CourseDirectory(config=app.config, root=str(root)),
                          config=app.config)
        subs = {s["student"]: s for s in api.get_submissions(aid)}
    finally:
        os.chdir(cwd)
    assert set(subs) == {"amy", "bob"}
    for student, when in times.items():
        assert subs[student]["autograded"], subs[student]
        assert subs[student]["timestamp"].replace("-", "").replace(":", "")[:15] == when
        assert subs[student]["score"] == pytest.approx(float(rows[(student, aid)]["score"]),
                                                       abs=1e-3)


# ----------------------------------------------------------------------------
# What the class got wrong


def test_class_report_on_the_demo_class(graded_demo):
    """The class report of the demo class: every assignment's score
    distribution and test cells as inline SVG, every visible check's pass
    rate, the hidden checks only as a rate per test cell, the diagnosed
    causes of brook's bugs each hitting one student, and nothing that is
    not on the page itself, no code and no hidden check."""
    from autograder import classreport
    _, out = graded_demo
    page = (out / "class-report.html").read_text(encoding="utf-8")
    text = html.unescape(page)
    assert not re.search(r"<script|<link|<img|src=|@import|url\((?!#)", page)  # url(#id): in-page
    assert not re.search(r"https?://(?!www\.w3\.org/)", page)  # SVG namespaces only
    for aid in course.assignments():
        assert f'<h2 id="{aid}">{aid}</h2>' in page
    svgs = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert len(svgs) == 2 * len(course.assignments())
    assert all('role="img" aria-label=' in s for s in svgs)
    secret = secret_names(out)
    assert not [name for name in secret if name in text]
    recs = records(out)
    messages = {True: set(), False: set()}
    for rec in recs.values():
        for c in rec.result.checks:
            messages[c.hidden].add(c.outcome.message)
    secret_messages = messages[True] - messages[False]
    assert [m for m in secret_messages if len(m) > 20]
    assert not [m for m in secret_messages if len(m) > 20 and m in text]
    assert "grading_rng" not in text and "BEGIN HIDDEN" not in text
    for aid in course.assignments():
        for c in course.load(aid).tests:  # no line of a test cell's code
            for line in course.test_source(c).splitlines():
                if len(line.strip()) > 25 and not line.strip().startswith("#"):
                    assert line.strip() not in text, line
    # Pass rates: worked out from the records, the hidden ones per test cell.
    graded = {k: rec.result for k, rec in recs.items() if rec.result.status is model.Status.GRADED}
    assert {s for s, _ in graded} == {"ada", "brook", "cato", "emil"}  # dara's is unreadable
    for aid in course.assignments():
        for c in course.load(aid).tests:
            hidden = [t for (_, a), r in graded.items() if a == aid for t in r.checks
                      if t.cell == c.grade_id and t.hidden]
            if hidden:
                rate = 100 * sum(t.passed for t in hidden) / len(hidden)
                assert f"hidden checks of {c.grade_id}: {rate:.0f}% passed" in text
    visible = {}
    for (_, aid), r in graded.items():
        if aid == "dcl_backprop":
            for t in r.checks:
                if not t.hidden:
                    visible.setdefault((t.cell, t.name), []).append(t.passed)
    assert visible
    for (cell, name), passed in visible.items():
        row = re.search(f"<td>{re.escape(cell)}</td><td>{re.escape(name)}</td><td>(.*?)</td>",
                        text)
        assert row, name
        assert f"({sum(passed)} of {len(passed)})" in row.group(1), name
    # The diagnoses of brook's dcl_backprop bugs (the course's words for them),
    # each hitting one student, under the function that has it.
    for function, cause in (("dense_backward", "it is divided by the batch size"),
                            ("softmax", "normalised over the wrong axis"),
                            ("relu_grad", "relu_grad(0) should be 0, not 1")):
        row = re.search(r'<tr><td class="num">(\d+)</td><td>' + re.escape(function)
                        + "</td><td>" + re.escape(cause), text)
        assert row and row.group(1) == "1", cause
    assert "not implemented yet" not in text  # cato's stubs name no cause ...
    assert "not attempted" in text  # ... they are counted as not attempted
    assert "fix dense_backward first" not in text
    # Numbers that differ between students become "…"; shared ones stay.
    parts, numbers = classreport._pattern("it is 2.585 times too large (a factor of N = 4)")
    assert classreport._show(parts, [numbers, classreport._pattern(
        "it is 3 times too large (a factor of N = 4)")[1]]) == \
        "it is … times too large (a factor of N = 4)"
    # Only a mistake the course named is a cause: an exception or a bare
    # difference is listed by its kind, and a student's exception class by no name.
    def check(outcome):
        return model.Check("dense_backward: dx", "test_dense", False, 1.0, 0.0, outcome)
    raised = model.Outcome(model.Kind.RAISED, "your code raised ValueError:\nboom",
                           exception="ValueError")
    own = model.Outcome(model.Kind.RAISED, "your code raised an exception of its own class "
                        "'Sneaky': boom", exception=model.exception_label("Sneaky"))
    wrong = model.Outcome(model.Kind.WRONG, "dx is wrong: the largest difference is 0.3",
                          model.Diagnosis.DIFFERENCE)
    named = model.Outcome(model.Kind.WRONG, "dx is wrong: it is transposed twice.",
                          model.Diagnosis.NAMED, "it is transposed twice")
    assert classreport.problem_of(check(raised)) == ("raised", "ValueError")
    assert classreport.problem_of(check(own)) == ("raised", "another exception")
    assert classreport.problem_of(check(wrong))[1] != "" and "0.3" not in \
        classreport.problem_of(check(wrong))[1]
    made = [model.Record(model.Submission(f"s{i}", "dcl_backprop"), model.Result(
        model.Status.GRADED, 0.0, 10.0, checks=(check(o),))) for i, o in
        enumerate((raised, own, wrong, named))]
    summary = classreport.summarise(made, "dcl_backprop", 10.0)
    assert [(c.function, c.text, c.students) for c in summary.causes] == \
        [("dense_backward", "it is transposed twice", 1)]
    assert len(summary.problems) == 4
    assert not [p for p in summary.problems if "Sneaky" in p.text or "boom" in p.text]
