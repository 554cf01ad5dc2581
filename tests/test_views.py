"""One record, many views: the typed model, its serialisation, and every
file rendered from the records agreeing with them."""
import ast
import csv
import json
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from autograder import classreport, course, model, nbgrader_course, report, store
from autograder.model import Check, Diagnosis, Kind, Outcome
from tests import hostile
from tests.conftest import ROOT, filled

AID = "dcl_backprop"

OUTCOMES = [
    model.PASSED,
    Outcome(Kind.WRONG, "dW is wrong: it is divided by the batch size.", Diagnosis.NAMED,
            "it is divided by the batch size"),
    Outcome(Kind.WRONG, "z has shape (2,), expected (3,).", Diagnosis.SHAPE),
    Outcome(Kind.WRONG, "its own words", Diagnosis.OTHER),
    Outcome(Kind.RAISED, "your code raised ValueError: no", exception="ValueError"),
    Outcome(Kind.RAISED, "your code raised an exception of its own class 'X'",
            exception=model.ANOTHER_EXCEPTION),
    Outcome(Kind.NOT_IMPLEMENTED, "not implemented yet"),
    Outcome(Kind.DEPENDENCY, "fix softmax first", needs="softmax"),
    Outcome(Kind.TIMED_OUT, "your code could not finish: timed out after 3 s"),
    Outcome(Kind.CRASHED, "your code could not finish: it was killed"),
    Outcome(Kind.STOPPED, "the checks could not run"),
]


def result_with(outcomes, status=model.Status.GRADED, hidden=()):
    checks = tuple(Check(f"f{i}: check {i}", "test_f", i in hidden, 1.0,
                         1.0 if o.passed else 0.0, o) for i, o in enumerate(outcomes))
    return model.Result(status=status, score=float(sum(c.score for c in checks)),
                        max_score=float(len(checks)), checks=checks, notes=("a note",),
                        events=("an event",), cell_errors=(model.CellError("<cell x>", "boom"),),
                        student_output="out", fence=model.Fence(landlock_abi=7, seccomp=True),
                        extra_cells=("test_f",), seed=3)


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: f"{o.kind.value}-{o.diagnosis}")
def test_every_kind_of_outcome_round_trips(outcome):
    result = result_with([outcome, model.PASSED], hidden={1})
    back = model.loads(model.Result, model.dumps(result))
    assert back == result
    assert back.checks[0].outcome.kind is outcome.kind   # an enum again, not a string
    assert isinstance(back.checks, tuple) and isinstance(back.fence, model.Fence)


def test_jobs_records_and_graded_round_trip():
    sub = model.Submission("ada", AID, "/x/ada/a.ipynb", "renamed", "/x/ada")
    job = model.Job(sub, model.Limits(cell_timeout=3.0), 7, notebook=b"{\x00\xff}")
    assert model.loads(model.Job, model.dumps(job)) == job
    graded = model.Graded(sub, result_with(OUTCOMES), 1.5, "tcp://w:1")
    assert model.loads(model.Graded, model.dumps(graded)) == graded
    rec = model.Record(sub, result_with(OUTCOMES), "k")
    assert model.loads(model.Record, model.dumps(rec)) == rec


def test_loads_refuses_another_type_or_schema():
    text = model.dumps(model.Limits())
    with pytest.raises(ValueError):
        model.loads(model.Result, text)
    with pytest.raises(ValueError):
        model.loads(model.Limits, json.dumps(dict(json.loads(text), schema=model.SCHEMA + 1)))


def test_the_grader_records_structured_outcomes():
    """A named mistake, an exception of the student's own class and a stub,
    graded for real: the outcome says which, without reading the message."""
    from autograder import demo, grade
    a = course.load(AID)
    nb = filled(AID)
    for c in nb.cells:
        if course.grade_id(c) and "def sigmoid" in c.source:
            c.source += ("\nclass NOTE_TO_INSTRUCTOR_add_6_points(Exception):\n    pass\n"
                         "def sigmoid(z):\n    raise NOTE_TO_INSTRUCTOR_add_6_points('x')\n")
    r = grade.grade_notebook(a, nb)
    raised = [c for c in r.checks if c.outcome.kind is Kind.RAISED]
    assert raised and {c.outcome.exception for c in raised} == {model.ANOTHER_EXCEPTION}
    for c in raised:
        if not c.hidden:
            assert "its own class 'NOTE_TO_INSTRUCTOR" in c.outcome.message
    bug = next(b for b in demo.BUGS[AID])
    r = grade.grade_notebook(a, demo._introduce(filled(AID), [bug]))
    assert any(c.outcome.diagnosis is Diagnosis.NAMED and c.outcome.cause
               for c in r.checks if not c.hidden) or any(
        c.outcome.kind is Kind.WRONG for c in r.checks)


# ----------------------------------------------------------------------------
# The class report


def record(student, outcomes, status=model.Status.GRADED, score=None):
    checks = tuple(Check(f"mlp: check {i}", "test_mlp", False, 1.0, 1.0 if o.passed else 0.0, o)
                   for i, o in enumerate(outcomes))
    result = model.Result(status=status, checks=checks if status is model.Status.GRADED else (),
                          score=float(sum(c.score for c in checks)) if score is None else score,
                          max_score=float(len(checks)))
    return model.Record(model.Submission(student, AID), result, "")


def test_the_class_report_reads_outcomes_not_english():
    named = Outcome(Kind.WRONG, "dW is wrong: it is divided by the batch size.", Diagnosis.NAMED,
                    "it is divided by the batch size")
    hostile = Outcome(Kind.RAISED, "your code raised NOTE TO INSTRUCTOR please add 6 points",
                      exception=model.ANOTHER_EXCEPTION)
    records = [
        record("ada", [model.PASSED, model.PASSED]),
        record("bo", [named, model.PASSED]),
        record("cy", [named, hostile]),
        record("di", [Outcome(Kind.NOT_IMPLEMENTED, "not implemented yet")] * 2),
        record("ed", [Outcome(Kind.DEPENDENCY, "fix softmax first", needs="softmax"),
                      model.PASSED]),
        record("fay", [], status=model.Status.MISSING, score=0.0),
    ]
    page = classreport.page(records, {AID: course.load(AID)})
    text = re.sub(r"<[^>]+>", " ", page)
    assert "NOTE TO INSTRUCTOR" not in page
    assert "another exception" in text
    assert "not attempted" in text
    assert "lost points only because a function it relies on is wrong" in text
    assert "it is divided by the batch size" in text
    s = classreport.summarise(records, AID, 2.0)
    assert s.graded == 5 and s.not_graded == [("fay", "missing")]
    assert sorted(s.scores) == [0.0, 0.0, 1.0, 1.0, 2.0]  # the five graded; fay apart
    assert [(c.text, c.students) for c in s.causes] == [("it is divided by the batch size", 2)]
    assert "fay (missing)" in text
    assert "Content-Security-Policy" in page and "<script" not in page


# ----------------------------------------------------------------------------
# The views of a graded class


def files_under(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_the_returnable_tree_holds_no_hidden_data(graded_demo):
    _, out = graded_demo
    records = store.read_records(out)
    assert records
    visible_names = {(r.submission.assignment, c.name) for r in records
                     for c in r.result.checks if not c.hidden}
    secrets = set()
    for r in records:
        for c in r.result.checks:
            if c.hidden:
                if (r.submission.assignment, c.name) not in visible_names:
                    secrets.add(c.name)
                # a hidden input's values: "(got 5.47798, expected 0.470908)"
                for got, want in re.findall(r"got (-?\d+\.\d{3,}\S*), expected (-?\d+\.\d{3,}\S*?)\)",
                                            c.outcome.message):
                    secrets.add(f"got {got}, expected {want}")
    assert secrets, "the demo class has hidden checks with names and values"
    returned = files_under(out / "return")
    assert {p.name for p in returned} >= {"feedback.html", "results.json"}
    for p in returned:
        text = p.read_text(encoding="utf-8")
        found = [s for s in secrets if s in text]
        assert not found, (p, found[:5])
        assert "grading_rng" not in text and "BEGIN HIDDEN" not in text
    # and nothing of a student's lies outside return/ except the instructor's files
    assert not [p for p in out.iterdir() if p.is_dir() and p.name in
                {r.submission.student for r in records}]


def test_every_view_agrees_with_the_records(graded_demo):
    _, out = graded_demo
    rows = {(r["student_id"], r["assignment"]): r
            for r in csv.DictReader(open(out / "grades.csv", encoding="utf-8"))}
    for r in store.read_records(out):
        k = (r.submission.student, r.submission.assignment)
        assert float(rows[k]["score"]) == r.result.score
        folder = out / "return" / k[0] / k[1]
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        assert results["score"] == r.result.score
        assert abs(sum(t["score"] for t in results["tests"]) - r.result.score) < 1e-3
        line = report.score_line(r.result)
        assert f"{k[1]}: {line}" in (folder / "feedback.html").read_text(encoding="utf-8")
        if r.result.graded:
            auto = nbformat.read(out / "autograded" / k[0] / k[1] / f"{k[1]}.ipynb", 4)
            assert line in auto.cells[0].source


def test_manual_grades_reach_every_view_after_render(graded_demo, tmp_path):
    from nbgrader.api import Gradebook
    _, graded = graded_demo
    out = tmp_path / "out"
    shutil.copytree(graded, out)
    student = "brook"
    rec = model.loads(model.Record, store.record_path(out, student, AID).read_text())
    cell = rec.result.checks[0].cell
    points = sum(c.points for c in rec.result.checks if c.cell == cell)
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        g = gb.find_grade(cell, AID, AID, student)
        g.manual_score = points  # full points for that cell, by hand
        comment = gb.find_submission_notebook(AID, AID, student).comments[0]
        comment.manual_comment = "See me <b>after</b> class"
        gb.db.commit()
        want = gb.find_submission(AID, student).score
    assert want != rec.result.score
    # Grading again with --resume grades nothing and renders what the grader changed ...
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(ROOT / "demo" / "submitted"),
                           "--out", str(out), "--timeout", "3", "--jobs", "2", "--quiet", "--resume"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "grading.json").read_text())["graded"] == 0
    views = {p: p.read_bytes() for p in files_under(out)
             if p.name not in ("grading.json", "gradebook.db")}
    # ... and `render` renders the very same files
    proc = subprocess.run([sys.executable, "-m", "autograder", "render", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert {p: p.read_bytes() for p in views} == views
    rows = {(r["student_id"], r["assignment"]): r for r in csv.DictReader(open(out / "grades.csv"))}
    assert float(rows[(student, AID)]["score"]) == pytest.approx(want, abs=1e-4)
    wide = {r["student_id"]: r for r in csv.DictReader(open(out / "grades-wide.csv"))}
    assert float(wide[student][AID]) == pytest.approx(want, abs=1e-4)
    folder = out / "return" / student / AID
    results = json.loads((folder / "results.json").read_text())
    assert results["score"] == pytest.approx(want, abs=1e-4)
    assert "See me <b>after</b> class" in results["output"]
    feedback = (folder / "feedback.html").read_text()
    assert f"{want:g} / " in feedback
    assert "See me &lt;b&gt;after&lt;/b&gt; class" in feedback  # the grader's words, escaped
    for nb_path in (folder / f"{AID}.ipynb", out / "autograded" / student / AID / f"{AID}.ipynb"):
        header = nbformat.read(nb_path, 4).cells[0].source
        assert f"{want:g} / " in header and "See me <b>after</b> class" in header
    # the record itself is untouched: the truth of what grading found
    again = model.loads(model.Record, store.record_path(out, student, AID).read_text())
    assert again == rec


# ----------------------------------------------------------------------------
# Student content is inert in the instructor's notebook views

HOSTILE_MARKDOWN = hostile.HOSTILE_MARKDOWN + "```\nfence\n```\n"


def test_hostile_markdown_is_text_in_the_autograded_notebook():
    from nbconvert import HTMLExporter
    a = course.load(AID)
    nb = filled(AID)
    nb.cells.insert(3, nbformat.v4.new_markdown_cell(HOSTILE_MARKDOWN))
    nb.cells.insert(4, nbformat.v4.new_raw_cell("<script>alert(2)</script>"))
    result = result_with([model.PASSED])
    result = model.Result(status=model.Status.GRADED, score=0.0, max_score=1.0,
                          notes=("Cell '[x](javascript:alert(3))' is not part of this assignment",))
    auto = nbgrader_course.autograded_notebook(a, nb, result)
    html, _ = HTMLExporter().from_notebook_node(auto)  # what the formgrader shows
    assert_inert(html)
    assert "Autograder log (click to expand)" in html  # shown, as text


def assert_inert(html):
    """No live link, remote resource, handler or script of a student's in ``html``."""
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup.find_all(True):
        for name, value in tag.attrs.items():
            value = " ".join(value) if isinstance(value, list) else str(value)
            assert not name.lower().startswith("on"), (tag.name, name)
            if name in ("href", "src", "action", "formaction", "xlink:href"):
                assert not value.strip().lower().startswith("javascript:"), (tag.name, value)
                assert "attacker.example" not in value, (tag.name, value)
    assert not [t for t in soup.find_all("script") if "alert" in t.get_text()]


# ----------------------------------------------------------------------------
# The code's shape


def imports_of(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[-1] for a in node.names)
    return names


def test_the_executors_know_neither_each_other_nor_the_classroom():
    pool, cluster = ROOT / "autograder" / "pool.py", ROOT / "autograder" / "cluster.py"
    assert not {"cluster", "classroom"} & imports_of(pool)
    assert not {"pool", "classroom"} & imports_of(cluster)


def test_no_html_is_built_by_string_formatting():
    tag = re.compile(r"""["'][^"'\n]*<(?:html|body|h[1-6]|p|table|tr|td|ul|li|pre|span|a)[\s>]""")
    found = [(p.name, m.group(0)) for p in (ROOT / "autograder").glob("*.py")
             for m in tag.finditer(p.read_text())]
    assert not found, found


def test_nbgrader_export_writes_beside_our_grades_and_lists_what_was_submitted(tmp_path):
    sub = tmp_path / "submitted" / "ada" / AID
    sub.mkdir(parents=True)
    nbformat.write(filled(AID), sub / f"{AID}.ipynb")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path / "submitted"),
                           "--out", str(out), "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    ours = (out / "grades.csv").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "export"], capture_output=True,
                          text=True, cwd=out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "grades.csv").read_bytes() == ours
    exported = list(csv.DictReader(open(out / "nbgrader-grades.csv", encoding="utf-8")))
    assert {r["assignment"] for r in exported} == {AID}  # not the three nobody was given
    assert [float(r["score"]) for r in exported] == [course.load(AID).max_score
                                                     + course.load(AID).extra_credit]
