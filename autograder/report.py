"""What grading leaves for each submission: results.json, feedback.html; grades.csv.

grades.csv is plain CSV for any spreadsheet: UTF-8 without a byte-order
mark, a header, one row per submission found, one line per row (messages
are flattened), and text that a spreadsheet would take for a formula
(starting with = + - @) is prefixed with an apostrophe.

results.json is Gradescope's format.  Learners see its top-level ``output``
and the visible tests; hidden tests carry ``visibility: "hidden"`` and the
grader's own output is ``stdout_visibility: "hidden"``.  feedback.html shows
visible checks in full and hidden ones only as "k of n passed".

Every writer is total: the texts in a result were cleaned where they came
in (``wire.clean``), lists are capped here (``MAX_ITEMS`` notes, events or
cell errors, each with a note of what was left out), and files are written
as UTF-8 with any unencodable character replaced, so what a student wrote
can neither stop a report from being written nor make it large.

(nbgrader's gradebook and course folders: ``nbgrader_course``; the class
report: ``classreport``.)
"""
import csv
import html
import json
from collections import OrderedDict
from pathlib import Path

CSV_COLUMNS = ["student_id", "assignment", "score", "max_score", "status", "seed", "message"]
MAX_ITEMS = 30  # notes, events or cell errors shown per submission


def capped(items, what="more"):
    """At most MAX_ITEMS of ``items``, the rest summed up in one line."""
    items = list(items or [])
    if len(items) <= MAX_ITEMS:
        return items
    return items[:MAX_ITEMS] + [f"... and {len(items) - MAX_ITEMS} {what} not shown."]


def _write(path, text):
    Path(path).write_text(text, encoding="utf-8", errors="replace")


def score_line(result):
    """'39 / 39' or '39 / 39, +4 extra credit'."""
    extra = result.get("extra_credit", 0.0)
    base = result["score"] - extra
    line = f"{base:g} / {result['max_score']:g}"
    return line + (f", +{extra:g} extra credit" if extra else "")


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
    lines += capped(result.get("notes"), "more notes")
    lines += capped(result.get("events"))
    errors = result.get("cell_errors", [])
    for e in errors[:MAX_ITEMS]:
        lines.append(f"Error in {e['cell']}:\n{e['error']}")
    if len(errors) > MAX_ITEMS:
        lines.append(f"... and {len(errors) - MAX_ITEMS} more errors not shown.")
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
    _write(folder / "results.json", json.dumps(gradescope_results(result), indent=2))
    _write(folder / "feedback.html", feedback_html(student, assignment, result))


def write_csv(out, rows):
    with open(Path(out) / "grades.csv", "w", newline="", encoding="utf-8",
              errors="replace") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k, "")) for k in CSV_COLUMNS})


def passed(test):
    return test["score"] >= test["max_score"]


def by_cell(tests):
    """{test cell: [its tests]}, in the order of the results."""
    cells = OrderedDict()
    for t in tests:
        cells.setdefault(t["cell"], []).append(t)
    return cells


def hidden_line(tests):
    """What a learner may know of a cell's hidden checks: how many passed."""
    hidden = [t for t in tests if t["visibility"] == "hidden"]
    if not hidden:
        return None
    return (f"Hidden checks on fresh random inputs: {sum(map(passed, hidden))} of "
            f"{len(hidden)} passed.")


def check_lines(tests):
    """The checks of one test cell as its output in a notebook: ✓ or ✗ and the
    message for each visible check, then the count of hidden ones passed."""
    lines = []
    for t in tests:
        if t["visibility"] == "hidden":
            continue
        lines.append(f"✓ {t['name']}" if passed(t) else
                     f"✗ {t['name']}:\n    " + t["output"].replace("\n", "\n    "))
    line = hidden_line(tests)
    return lines + ([line] if line else [])


def feedback_html(student, assignment, result):
    """Learner-facing feedback: visible checks in full, hidden ones counted only."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
             f"<title>Feedback: {e(assignment)}</title><style>"
             "body{font-family:sans-serif;max-width:52em;margin:2em auto;line-height:1.4}"
             ".ok{color:#1a7f37}.bad{color:#c62828}pre{background:#f4f4f4;padding:.6em;"
             "overflow-x:auto;white-space:pre-wrap}td,th{padding:.2em .8em;text-align:left}"
             "</style></head><body>",
             f"<h1>{e(assignment)}: {e(score_line(result))}</h1>",
             f"<p>Student: {e(student)}</p>"]
    for title, items in (("Notes", capped(result.get("notes"), "more notes")),
                         ("What happened while running your notebook",
                          capped(result.get("events")))):
        if items:
            parts.append(f"<h2>{title}</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in items) + "</ul>")
    if result.get("cell_errors"):
        parts.append("<h2>Errors in your cells</h2>")
        for err in result["cell_errors"][:MAX_ITEMS]:
            parts.append(f"<p>{e(err['cell'])}</p><pre>{e(err['error'])}</pre>")
        if len(result["cell_errors"]) > MAX_ITEMS:
            parts.append(f"<p>... and {len(result['cell_errors']) - MAX_ITEMS} more errors "
                         "not shown.</p>")
    cells = by_cell(result.get("tests", []))
    if cells:
        parts.append("<h2>Checks</h2>")
    for cell, tests in cells.items():
        got = sum(t["score"] for t in tests)
        total = sum(t["max_score"] for t in tests)
        extra = " (extra credit)" if cell in result.get("extra_cells", ()) else ""
        parts.append(f"<h3>{e(cell)}{extra}: {got:.4g} / {total:.4g}</h3><ul>")
        for t in tests:
            if t["visibility"] == "hidden":
                continue
            ok = passed(t)
            mark = "<span class='ok'>✓</span>" if ok else "<span class='bad'>✗</span>"
            msg = "" if ok else f"<pre>{e(t['output'])}</pre>"
            parts.append(f"<li>{mark} {e(t['name'])}{msg}</li>")
        line = hidden_line(tests)
        if line:
            parts.append(f"<li>{e(line)}</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
