"""What grading leaves behind: grades.csv, results.json, feedback.html, gradebook.

grades.csv is plain CSV for any spreadsheet: UTF-8 without a byte-order
mark, a header, one row per submission found, one line per row (messages
are flattened), and text that a spreadsheet would take for a formula
(starting with = + - @) is prefixed with an apostrophe.

results.json is Gradescope's format.  Learners see its top-level ``output``
and the visible tests; hidden tests carry ``visibility: "hidden"`` and the
grader's own output is ``stdout_visibility: "hidden"``.  feedback.html shows
visible checks in full and hidden ones only as "k of n passed".
"""
import csv
import html
import json
import warnings
from collections import OrderedDict
from pathlib import Path

CSV_COLUMNS = ["student_id", "assignment", "score", "max_score", "status", "seed", "message"]


def _cell(value):
    """A CSV field a spreadsheet shows as text, on one line."""
    if not isinstance(value, str):
        return value
    value = " ".join(value.split())
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def summary(status, result):
    """One line for grades.csv: why a submission was not graded, or what went wrong."""
    if status != "graded":
        notes = result.get("notes") or [status]
        return notes[-1][:300]
    events = result.get("events") or []
    return events[0][:300] if events else ""


def gradescope_results(result):
    """The Gradescope results format (hidden tests marked ``hidden``)."""
    lines = []
    lines += result.get("notes", [])
    lines += result.get("events", [])
    for e in result.get("cell_errors", []):
        lines.append(f"Error in {e['cell']}:\n{e['error']}")
    return {
        "score": float(result["score"]),
        "max_score": float(result["max_score"]),
        "output": "\n".join(lines),
        "tests": [{"name": t["name"], "score": t["score"], "max_score": t["max_score"],
                   "output": t["output"], "visibility": t["visibility"]}
                  for t in result.get("tests", [])],
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"seed": result.get("seed"), "sandbox": result.get("sandbox", {})},
    }


def write_submission(out, student, assignment, result):
    folder = Path(out) / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(gradescope_results(result), indent=2))
    (folder / "feedback.html").write_text(feedback_html(student, assignment, result))


def write_csv(out, rows):
    with open(Path(out) / "grades.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k, "")) for k in CSV_COLUMNS})


def record_in_gradebook(db_url, assignments, graded):
    """Store every score in nbgrader's gradebook, one grade per test cell.

    assignments: {id: course.Assignment}; graded: list of (student, id, result).
    """
    import nbgrader.api
    from nbgrader.api import Gradebook  # slow to import: only where it is needed
    try:
        # A new gradebook asks the `alembic` command for the schema version
        # (2 s of start-up); reading it from nbgrader's own migrations is the
        # same answer without the subprocess.
        from alembic.script import ScriptDirectory
        from nbgrader.dbutil import ALEMBIC_DIR
        head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
        if head:
            nbgrader.api.get_alembic_version = lambda: head
    except Exception:
        pass
    with warnings.catch_warnings(), Gradebook(db_url) as gb:
        # nbgrader 0.9 trips SQLAlchemy 2's autoflush warnings; harmless here.
        warnings.simplefilter("ignore")
        for a in assignments.values():
            gb.update_or_create_assignment(a.id)
            gb.update_or_create_notebook(a.id, a.id)
            for c in a.tests:
                # An extra-credit cell adds nothing to the maximum; its points
                # go to the grade's extra_credit, as nbgrader keeps them.
                gb.update_or_create_grade_cell(c.grade_id, a.id, a.id,
                                               max_score=0.0 if c.extra_credit else c.points,
                                               cell_type="code")
        for student, aid, result in graded:
            if aid not in assignments:
                continue
            gb.update_or_create_student(student)
            gb.update_or_create_submission(aid, student)
            per_cell = {c.grade_id: 0.0 for c in assignments[aid].tests}
            for t in result.get("tests", []):
                per_cell[t["cell"]] = per_cell.get(t["cell"], 0.0) + t["score"]
            extra = {c.grade_id for c in assignments[aid].tests if c.extra_credit}
            for gid, score in per_cell.items():
                grade = gb.find_grade(gid, aid, aid, student)
                if gid in extra:
                    grade.auto_score, grade.extra_credit = 0.0, round(score, 4)
                else:
                    grade.auto_score = round(score, 4)
                grade.needs_manual_grade = False
            gb.db.commit()


def feedback_html(student, assignment, result):
    """Learner-facing feedback: visible checks in full, hidden ones counted only."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
             f"<title>Feedback: {e(assignment)}</title><style>"
             "body{font-family:sans-serif;max-width:52em;margin:2em auto;line-height:1.4}"
             ".ok{color:#1a7f37}.bad{color:#c62828}pre{background:#f4f4f4;padding:.6em;"
             "overflow-x:auto;white-space:pre-wrap}td,th{padding:.2em .8em;text-align:left}"
             "</style></head><body>",
             f"<h1>{e(assignment)}: {result['score']:g} / {result['max_score']:g}</h1>",
             f"<p>Student: {e(student)}</p>"]
    for title, items in (("Notes", result.get("notes", [])),
                         ("What happened while running your notebook", result.get("events", []))):
        if items:
            parts.append(f"<h2>{title}</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in items) + "</ul>")
    if result.get("cell_errors"):
        parts.append("<h2>Errors in your cells</h2>")
        for err in result["cell_errors"]:
            parts.append(f"<p>{e(err['cell'])}</p><pre>{e(err['error'])}</pre>")
    cells = OrderedDict()
    for t in result.get("tests", []):
        cells.setdefault(t["cell"], []).append(t)
    if cells:
        parts.append("<h2>Checks</h2>")
    for cell, tests in cells.items():
        got = sum(t["score"] for t in tests)
        total = sum(t["max_score"] for t in tests)
        parts.append(f"<h3>{e(cell)}: {got:.4g} / {total:.4g}</h3><ul>")
        for t in tests:
            if t["visibility"] == "hidden":
                continue
            ok = t["score"] >= t["max_score"]
            mark = "<span class='ok'>✓</span>" if ok else "<span class='bad'>✗</span>"
            msg = "" if ok else f"<pre>{e(t['output'])}</pre>"
            parts.append(f"<li>{mark} {e(t['name'])}{msg}</li>")
        hidden = [t for t in tests if t["visibility"] == "hidden"]
        if hidden:
            passed = sum(t["score"] >= t["max_score"] for t in hidden)
            parts.append(f"<li>Hidden checks on fresh random inputs: {passed} of "
                         f"{len(hidden)} passed.</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
