"""The grader's promises, checked through its real code paths."""
import csv
import html
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import course, demo, grade
from autograder.model import Status
from tests.conftest import ROOT, filled, hidden_line, records, release, returned, secret_names


@pytest.mark.parametrize("aid", course.assignments())
@pytest.mark.parametrize("seed", [0, 1])
def test_reference_gets_full_marks(aid, seed):
    a = course.load(aid)
    r = grade.grade_notebook(a, filled(aid), seed=seed)
    lost = [(c.name, c.outcome.message) for c in r.checks if c.score < c.points or not c.passed]
    assert not lost and r.score == a.max_score + a.extra_credit, lost
    assert r.status is Status.GRADED and r.max_score == a.max_score
    assert not r.cell_errors, r.cell_errors


@pytest.mark.parametrize("aid", course.assignments())
def test_untouched_stubs_get_nothing(aid):
    a = course.load(aid)
    r = grade.grade_notebook(a, release(aid))
    assert r.score == 0.0 and r.checks
    assert all(not c.passed and c.score == 0.0 and c.outcome.message for c in r.checks)


@pytest.mark.parametrize("aid", [a for a in course.assignments() if demo.BUGS.get(a)])
def test_each_plausible_bug_loses_points_with_a_named_check(aid):
    a = course.load(aid)
    for bug in demo.BUGS[aid]:
        nb = demo._introduce(filled(aid), [bug])
        r = grade.grade_notebook(a, nb)
        failed = [c for c in r.checks if c.score < c.points]
        assert r.score < a.max_score + a.extra_credit, bug
        assert any(not c.hidden and c.outcome.message for c in failed), \
            f"no visible check names the bug {bug}"


@pytest.mark.parametrize("aid", course.assignments())
def test_check_names_start_with_a_graded_function(aid, curriculum_functions):
    a = course.load(aid)
    allowed = set(curriculum_functions[aid]) | set(a.functions)
    r = grade.grade_notebook(a, filled(aid))
    assert r.checks
    for c in r.checks:
        assert c.name.split(":")[0] in allowed, c.name


def test_grading_is_deterministic_for_a_seed():
    aid = course.assignments()[0]
    a = course.load(aid)
    nb = demo._introduce(filled(aid), demo.BUGS.get(aid, [])[:2])
    first = grade.grade_notebook(a, nb, seed=7)
    again = grade.grade_notebook(a, nb, seed=7)
    assert [(c.name, c.score) for c in first.checks] == [(c.name, c.score) for c in again.checks]
    assert first.score == again.score


def test_submitted_test_cells_are_ignored():
    """Editing the test cells (say, to `pass`) changes nothing."""
    aid = course.assignments()[0]
    a = course.load(aid)
    nb = release(aid)
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade"):
            c.source = "pass"
    assert grade.grade_notebook(a, nb).score == 0.0


def test_cli_grades_the_demo_class(graded_demo):
    proc, out = graded_demo
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert {"student_id", "assignment", "score", "max_score"} <= set(rows[0])
    found = {(r["student_id"], r["assignment"]) for r in rows}
    expected = {(s.name, x.name) for s in (ROOT / "demo" / "submitted").iterdir()
                for x in s.iterdir()}
    assert found == expected
    by = {(r["student_id"], r["assignment"]): r for r in rows}
    for aid in course.assignments():
        full = float(by[("ada", aid)]["max_score"])
        assert full == course.load(aid).max_score
        full += course.load(aid).extra_credit  # the reference also does the extras
        assert float(by[("ada", aid)]["score"]) == full
        assert float(by[("cato", aid)]["score"]) == 0.0
        assert float(by[("dara", aid)]["score"]) == 0.0 and by[("dara", aid)]["status"] == "unreadable"
        assert float(by[("emil", aid)]["score"]) == full  # runaway cell stopped, code still graded
        if demo.BUGS.get(aid):
            assert 0 < float(by[("brook", aid)]["score"]) < full


def test_results_json_is_gradescope_format_and_feedback_hides_hidden_tests(graded_demo):
    """Every record has its student's folder: results.json in Gradescope's
    format holding each visible check as recorded and, per test cell, one
    entry with the count and points of its hidden checks; the hidden checks
    themselves (names, messages) are only in the records."""
    _, out = graded_demo
    recs = records(out)
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert set(recs) == {(r["student_id"], r["assignment"]) for r in rows}
    secret = secret_names(out)
    returned_files = sorted(p.relative_to(out / "return") for p in (out / "return").rglob("*")
                            if p.is_file())
    assert returned_files == sorted(Path(s) / aid / n for s, aid in recs
                                    for n in ("feedback.html", "results.json", f"{aid}.ipynb"))
    for (student, aid), rec in recs.items():
        result = rec.result
        folder = returned(out, student, aid)
        r = json.loads((folder / "results.json").read_text())
        assert isinstance(r["score"], float) and isinstance(r["max_score"], float)
        assert r["score"] == result.score and r["max_score"] == result.max_score
        assert isinstance(r["output"], str)
        assert r["extra_data"]["seed"] == result.seed == 0
        assert r["extra_data"]["status"] == result.status.value
        assert isinstance(r["extra_data"]["sandbox"], dict)
        want = []
        for cell in dict.fromkeys(c.cell for c in result.checks):
            checks = [c for c in result.checks if c.cell == cell]
            want += [(c.name, c.score, c.points,
                      "\n".join(filter(None, [c.outcome.message, c.withheld])))
                     for c in checks if not c.hidden]
            hidden = [c for c in checks if c.hidden]
            if hidden:
                want.append((f"{cell}: hidden checks", sum(c.score for c in hidden),
                             sum(c.points for c in hidden), hidden_line(checks)))
        got = []
        for t in r["tests"]:
            assert set(t) == {"name", "score", "max_score", "output", "visibility"}
            assert t["visibility"] == "visible"
            got.append((t["name"], t["score"], t["max_score"], t["output"]))
        assert [g[0] for g in got] == [w[0] for w in want], (student, aid)
        for g, w in zip(got, want):
            assert g[1:3] == pytest.approx(w[1:3], abs=1e-6) and g[3] == w[3], (g, w)
        assert abs(sum(t["score"] for t in r["tests"]) - r["score"]) < 1e-3
        feedback = (folder / "feedback.html").read_text()
        text = html.unescape(feedback)
        plain = "\n".join([r["output"]] + [t["name"] + "\n" + t["output"] for t in r["tests"]])
        for name in secret:
            assert name not in text and name not in plain, (student, aid, name)
        shown = {c.outcome.message for c in result.checks if not c.hidden}
        for c in result.checks:
            message = c.outcome.message
            if c.hidden and len(message) > 20 and message not in shown:
                assert message not in text and message not in plain, message
        for cell in dict.fromkeys(c.cell for c in result.checks):
            checks = [c for c in result.checks if c.cell == cell]
            if any(c.hidden for c in checks):
                assert hidden_line(checks) in text, (student, aid, cell)
        assert "grading_rng" not in feedback and "BEGIN HIDDEN" not in feedback
    assert any(c.hidden for rec in recs.values() for c in rec.result.checks)
    emil = json.loads((returned(out, "emil", "dcl_backprop") / "results.json").read_text())
    assert "was stopped" in emil["output"]


def test_gradebook_holds_the_scores(graded_demo):
    from nbgrader.api import Gradebook
    _, out = graded_demo
    rows = list(csv.DictReader(open(out / "grades.csv")))
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        for r in rows:
            if r["status"] == "graded":
                sub = gb.find_submission(r["assignment"], r["student_id"])
                assert sub.score == pytest.approx(float(r["score"]), abs=1e-3)


def test_cli_rejects_a_missing_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "out")], capture_output=True, cwd=ROOT)
    assert proc.returncode != 0


@pytest.mark.parametrize("content, message", [
    ("", "empty"), ("{not json", "not valid"), ('{"cells": 3, "nbformat": 4}', "not valid"),
])
def test_broken_files_get_a_clear_message(tmp_path, content, message):
    p = tmp_path / "x.ipynb"
    p.write_text(content)
    nb, problem = grade.read_submission(p)
    assert nb is None and message in problem


def test_old_nbformat_is_converted(tmp_path):
    aid = course.assignments()[0]
    v3 = nbformat.convert(filled(aid), 3)
    p = tmp_path / "old.ipynb"
    p.write_text(nbformat.writes(v3, version=3))
    nb, problem = grade.read_submission(p)
    assert problem is None
    r = grade.grade_notebook(course.load(aid), nb)
    assert r.score > 0


def test_extra_credit_is_optional_and_kept_apart_in_the_gradebook(tmp_path):
    """Skipping an extra-credit part costs nothing; doing it adds on top."""
    from nbgrader.api import Gradebook
    from autograder import nbgrader_course
    extras = [a for a in course.assignments() if course.load(a).extra_credit]
    assert extras, "no assignment has an extra-credit part"
    aid = extras[0]
    a = course.load(aid)
    extra_cells = {c.grade_id for c in a.tests if c.extra_credit}
    stubs = {c.metadata["nbgrader"]["grade_id"]: c.source for c in release(aid).cells
             if c.metadata.get("nbgrader", {}).get("solution")}
    skipped = filled(aid)
    for c in skipped.cells:  # put back the stubs of the functions only extra cells test
        gid = c.metadata.get("nbgrader", {}).get("grade_id", "")
        if gid.startswith("answer_gru"):
            c.source = stubs[gid]
    without = grade.grade_notebook(a, skipped)
    with_extra = grade.grade_notebook(a, filled(aid))
    assert without.score == a.max_score == without.max_score and without.extra_credit == 0
    assert with_extra.score == a.max_score + a.extra_credit
    assert with_extra.extra_credit == a.extra_credit
    db = f"sqlite:///{tmp_path / 'gb.db'}"
    writer = nbgrader_course.GradebookWriter(db, {aid: a})
    try:
        writer.add("s1", aid, without)
        writer.add("s2", aid, with_extra)
    finally:
        writer.close()
    with Gradebook(db) as gb:
        assert gb.find_assignment(aid).max_score == a.max_score
        assert gb.find_submission(aid, "s1").score == pytest.approx(a.max_score)
        assert gb.find_submission(aid, "s2").score == pytest.approx(a.max_score + a.extra_credit)
        for gid in extra_cells:
            assert gb.find_grade(gid, aid, aid, "s2").extra_credit > 0


# ----------------------------------------------------------------------------
# Regrading into an existing OUT, and the class-wide files


def _read_csv(path):
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # no byte-order mark
    return list(csv.reader(raw.decode("utf-8").splitlines()))


def assert_out_agrees(out):
    """grades.csv, grades-wide.csv and the gradebook hold the same scores,
    for the same students and assignments; the rows of grades.csv."""
    from nbgrader.api import Gradebook
    rows = list(csv.DictReader(open(out / "grades.csv", encoding="utf-8")))
    header, *wide = _read_csv(out / "grades-wide.csv")
    assert header[0] == "student_id"
    wide = {r[0]: dict(zip(header[1:], r[1:])) for r in wide}
    assert set(wide) == {r["student_id"] for r in rows}
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        in_gradebook = {(s.student.id, s.assignment.name): s.score
                        for a in course.assignments() for s in gb.assignment_submissions(a)}
    assert set(in_gradebook) == {(r["student_id"], r["assignment"]) for r in rows}
    for r in rows:
        key = (r["student_id"], r["assignment"])
        assert float(wide[r["student_id"]][r["assignment"]]) == float(r["score"]), key
        assert in_gradebook[key] == pytest.approx(float(r["score"]), abs=1e-3), key
    return {(r["student_id"], r["assignment"]): r for r in rows}


def _write_class(folder, notebooks):
    for name, nb in notebooks.items():
        (folder / name / AID0).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / name / AID0 / f"{AID0}.ipynb")
    return folder


AID0 = course.assignments()[0]


def test_regrading_some_students_keeps_everyone_elses_grades(tmp_path):
    """A folder with fewer students, then --only, into the same OUT: the
    regraded rows change, everyone else's stay, and grades.csv,
    grades-wide.csv and the gradebook agree after each run."""
    from autograder import classroom, store
    from autograder.model import Limits
    a = course.load(AID0)
    full = a.max_score + a.extra_credit
    buggy = demo._introduce(filled(AID0), demo.BUGS[AID0][:1])
    out = tmp_path / "out"
    first = _write_class(tmp_path / "class", {"amy": filled(AID0), "bob": buggy,
                                              "cy": release(AID0)})
    classroom.grade_class(first, out, jobs=2, limits=Limits(cell_timeout=10), progress=False)
    before = assert_out_agrees(out)
    assert float(before[("amy", AID0)]["score"]) == full
    assert 0 < float(before[("bob", AID0)]["score"]) < full
    assert float(before[("cy", AID0)]["score"]) == 0

    def kept(student):  # the record, the truth of every view
        return store.record_path(out, student, AID0).read_bytes()

    amy, cy = kept("amy"), kept("cy")
    # Bob hands in a corrected notebook, alone in a folder of its own.
    late = _write_class(tmp_path / "late", {"bob": filled(AID0)})
    classroom.grade_class(late, out, jobs=2, limits=Limits(cell_timeout=10), progress=False)
    after = assert_out_agrees(out)
    assert float(after[("bob", AID0)]["score"]) == full
    assert after[("amy", AID0)] == before[("amy", AID0)]
    assert after[("cy", AID0)] == before[("cy", AID0)]
    assert kept("amy") == amy and kept("cy") == cy
    bob = kept("bob")
    # Cy's notebook is replaced; so is Amy's, but only Cy is regraded.
    _write_class(first, {"cy": filled(AID0), "amy": release(AID0)})
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(first), "--out",
                           str(out), "--only", "cy", "--quiet", "--timeout", "10"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    last = assert_out_agrees(out)
    assert float(last[("cy", AID0)]["score"]) == full
    assert last[("amy", AID0)] == before[("amy", AID0)]
    assert last[("bob", AID0)] == after[("bob", AID0)]
    assert kept("amy") == amy and kept("bob") == bob and kept("cy") != cy
    assert records(out)[("cy", AID0)].result.score == full
    assert json.loads((out / "grading.json").read_text())["graded"] == 1


def test_wide_csv_imports_into_an_lms_gradebook(graded_demo):
    """A header (student_id, then one column per assignment) and exactly one
    row per student, every score a number: the shape LMS gradebooks import."""
    _, out = graded_demo
    rows = assert_out_agrees(out)
    header, *body = _read_csv(out / "grades-wide.csv")
    assert header == ["student_id"] + course.assignments()
    students = [r[0] for r in body]
    assert students == sorted({s for s, _ in rows}) and len(set(students)) == len(students)
    for r in body:
        assert len(r) == len(header)
        for aid, value in zip(header[1:], r[1:]):
            assert float(value) == float(rows[(r[0], aid)]["score"])


def test_grading_requirements_are_pinned_as_the_full_environment():
    """requirements-grading.txt (the Gradescope environment) pins what the
    grader and the students' notebooks import, at constraints.txt's versions,
    and none of the site's, notebooks' or tests' tools."""
    def pins(name):
        found = {}
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                package, version = line.split("==")
                found[package.strip().lower()] = version.strip()
        return found

    grading, constraints = pins("requirements-grading.txt"), pins("constraints.txt")
    assert "-c constraints.txt" in (ROOT / "requirements-grading.txt").read_text()
    assert {"numpy", "matplotlib", "nbformat", "jupytext", "psutil", "pyseccomp"} <= set(grading)
    assert not set(grading) & {"nbgrader", "jupyter-book", "playwright", "pytest", "ipykernel",
                               "jupyterlab", "beautifulsoup4", "tqdm"}
    for package, version in grading.items():
        assert constraints.get(package) == version, package
    assert "-e ." not in (ROOT / "requirements-grading.txt").read_text()


def test_the_key_of_a_grade_depends_on_values_not_their_spelling(tmp_path):
    """--resume keeps a record graded under equal limits (20 s or 20.0 s), and
    only those: the key changes with the limits, the seed and the notebook."""
    from autograder import store
    from autograder.model import Limits
    p = tmp_path / "x.ipynb"
    nbformat.write(filled(AID0), p)
    k = store.key(p, AID0, 0, Limits(cell_timeout=20.0))
    assert store.key(p, AID0, 0, Limits(cell_timeout=20)) == k
    assert store.key(p, AID0, 0, Limits(cell_timeout=21.0)) != k
    assert store.key(p, AID0, 1, Limits(cell_timeout=20.0)) != k
    nbformat.write(release(AID0), p)
    assert store.key(p, AID0, 0, Limits(cell_timeout=20.0)) != k
