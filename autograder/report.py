"""The views of one submission's record, and the rows of grades.csv.

Every file a student or an instructor reads about a submission is rendered
here (or, for nbgrader's files, in ``nbgrader_course``) from its
``model.Record`` and what a grader changed by hand (``model.Manual``), so no
two of them can disagree:

- ``feedback_html``: the learner's feedback page (template
  ``templates/feedback.html.j2``): visible checks in full, hidden ones only
  as "k of n passed", the grader's comments;
- ``gradescope_results``: Gradescope's ``results.json``.  Hidden checks are
  one test per test cell ("hidden checks: k of n passed", with the points
  they carry): their names embed sizes and their messages values, so they
  exist only in the instructor's records;
- ``row``: one row of grades.csv (``Row``); ``write_csv`` writes them as
  plain CSV for any spreadsheet: UTF-8 without a byte-order mark, a header,
  one line per row, and text that a spreadsheet would take for a formula
  (starting with = + - @) prefixed with an apostrophe.

HTML comes from Jinja2 templates with autoescaping, and every page carries
a Content-Security-Policy that allows no script and no remote resource.
Every writer is total: the texts in a result were cleaned where they came
in (``wire.clean``), lists are capped here (``MAX_ITEMS``), and files are
written as UTF-8 with any unencodable character replaced, so what a student
wrote can neither stop a view from being written nor make it large.
"""
import csv
import functools
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

from .model import NO_MANUAL, Status, final_score

CSV_COLUMNS = ["student_id", "assignment", "score", "max_score", "status", "seed", "message"]
MAX_ITEMS = 30  # notes, events or cell errors shown per submission
TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.lru_cache(maxsize=None)
def environment():
    """The templates, autoescaped whatever their names."""
    import jinja2
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)


def render_template(name, **values):
    return environment().get_template(name).render(**values)


def capped(items, what="more"):
    """At most MAX_ITEMS of ``items``, the rest summed up in one line."""
    items = list(items or [])
    if len(items) <= MAX_ITEMS:
        return items
    return items[:MAX_ITEMS] + [f"... and {len(items) - MAX_ITEMS} {what} not shown."]


def write_text(path, text):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8", errors="replace")


def score_line(result, manual=NO_MANUAL):
    """'39 / 39' or '39 / 39, +4 extra credit' (the gradebook's score where a
    grader changed it by hand)."""
    extra = result.extra_credit
    base = final_score(result, manual) - extra
    line = f"{base:g} / {result.max_score:g}"
    return line + (f", +{extra:g} extra credit" if extra else "")


def manual_note(result, manual):
    if manual.score is None or abs(manual.score - result.score) < 1e-9:
        return ""
    return f"Includes manual grading in the gradebook (autograder: {result.score:g})."


# ----------------------------------------------------------------------------
# Test cells


@dataclass(frozen=True)
class CellView:
    """One test cell as every view shows it."""
    name: str
    extra: bool
    score: str
    points: str
    visible: tuple
    hidden_line: str
    hidden_score: float
    hidden_points: float


def hidden_line(checks):
    """What a learner may know of a cell's hidden checks: how many passed."""
    hidden = [c for c in checks if c.hidden]
    if not hidden:
        return ""
    return (f"Hidden checks on fresh random inputs: {sum(c.passed for c in hidden)} of "
            f"{len(hidden)} passed.")


def cells(result):
    """The test cells of a result, in order (``CellView``)."""
    by = OrderedDict()
    for c in result.checks:
        by.setdefault(c.cell, []).append(c)
    out = []
    for name, checks in by.items():
        hidden = [c for c in checks if c.hidden]
        out.append(CellView(
            name=name, extra=name in result.extra_cells,
            score=f"{sum(c.score for c in checks):.4g}",
            points=f"{sum(c.points for c in checks):.4g}",
            visible=tuple(c for c in checks if not c.hidden),
            hidden_line=hidden_line(checks),
            hidden_score=round(sum(c.score for c in hidden), 6),
            hidden_points=round(sum(c.points for c in hidden), 6)))
    return out


def check_lines(checks):
    """The checks of one test cell as its output in a notebook: ✓ or ✗ and the
    message for each visible check, then the count of hidden ones passed."""
    lines = []
    for c in checks:
        if c.hidden:
            continue
        lines.append(f"✓ {c.name}" if c.passed else
                     f"✗ {c.name}:\n    " + c.outcome.message.replace("\n", "\n    "))
        if c.withheld:
            lines.append("    " + c.withheld)
    line = hidden_line(checks)
    return lines + ([line] if line else [])


# ----------------------------------------------------------------------------
# The views


def feedback_html(student, assignment, result, manual=NO_MANUAL):
    """The learner's feedback page."""
    errors = list(result.cell_errors)
    return render_template(
        "feedback.html.j2", student=student, assignment=assignment,
        score_line=score_line(result, manual), manual_note=manual_note(result, manual),
        comments=manual.comments,
        lists=[("Notes", capped(result.notes, "more notes")),
               ("What happened while running your notebook", capped(result.events))],
        cell_errors=errors[:MAX_ITEMS], more_errors=max(0, len(errors) - MAX_ITEMS),
        cells=cells(result))


def overview(result, manual=NO_MANUAL):
    """The top-level text of results.json: the notes, what happened, the
    errors, the hidden checks' count and points, the grader's comments."""
    lines = []
    note = manual_note(result, manual)
    if note:
        lines.append(note)
    lines += [f"Comment on {c.cell}: {c.text}" for c in manual.comments]
    lines += capped(result.notes, "more notes")
    lines += capped(result.events)
    errors = list(result.cell_errors)
    for e in errors[:MAX_ITEMS]:
        lines.append(f"Error in {e.cell}:\n{e.error}")
    if len(errors) > MAX_ITEMS:
        lines.append(f"... and {len(errors) - MAX_ITEMS} more errors not shown.")
    hidden = [c for c in result.checks if c.hidden]
    if hidden:
        lines.append(f"Hidden checks: {sum(c.passed for c in hidden)} of {len(hidden)} passed, "
                     f"{sum(c.score for c in hidden):.4g} of {sum(c.points for c in hidden):.4g} "
                     "points.")
    return "\n".join(lines)


def gradescope_results(result, manual=NO_MANUAL):
    """Gradescope's results format: every visible check, and one test per
    test cell for its hidden checks."""
    tests = []
    for cell in cells(result):
        for c in cell.visible:
            tests.append({"name": c.name, "score": c.score, "max_score": c.points,
                          "output": "\n".join(filter(None, [c.outcome.message, c.withheld])),
                          "visibility": "visible"})
        if cell.hidden_line:
            tests.append({"name": f"{cell.name}: hidden checks", "score": cell.hidden_score,
                          "max_score": cell.hidden_points, "output": cell.hidden_line,
                          "visibility": "visible"})
    return {
        "score": float(final_score(result, manual)),
        "max_score": float(result.max_score),
        "output": overview(result, manual),
        "tests": tests,
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"seed": result.seed, "status": result.status.value,
                       "sandbox": asdict(result.fence)},
    }


def results_json(result, manual=NO_MANUAL):
    return json.dumps(gradescope_results(result, manual), indent=2, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------
# grades.csv


@dataclass(frozen=True)
class Row:
    """One row of grades.csv."""
    student_id: str
    assignment: str
    score: float
    max_score: float
    status: str
    seed: int
    message: str


def summary(result):
    """One line for grades.csv: why a submission was not graded, or what went wrong."""
    if result.status is not Status.GRADED:
        notes = list(result.notes) or [result.status.value]
        return notes[-1][:300]
    return result.events[0][:300] if result.events else ""


def row(submission, result, manual=NO_MANUAL):
    message = summary(result)
    note = manual_note(result, manual)
    if note:
        message = " ".join(filter(None, [note, message]))
    return Row(submission.student, submission.assignment, final_score(result, manual),
               result.max_score, result.status.value, result.seed, message)


def _cell(value):
    """A CSV field a spreadsheet shows as text, on one line."""
    if not isinstance(value, str):
        return value
    value = " ".join(value.split())
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8", errors="replace") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in asdict(r).items()})


def write_wide_csv(path, rows, assignments):
    """A header (student_id, then the assignment ids) and one row per student
    with the score of each assignment in its column, blank where nothing was
    recorded; the maximum scores are in grades.csv."""
    aids = sorted({r.assignment for r in rows} & set(assignments))
    by = {}
    for r in rows:
        if r.assignment in aids:
            by.setdefault(r.student_id, {})[r.assignment] = r.score
    with open(path, "w", newline="", encoding="utf-8", errors="replace") as f:
        w = csv.writer(f)
        w.writerow(["student_id"] + aids)
        for student in sorted(by):
            w.writerow([_cell(student)] + [by[student].get(a, "") for a in aids])
