"""What the class got wrong: ``OUT/class-report.html``, from the records of a class.

One static page (template ``templates/class-report.html.j2``; plots as
inline SVG drawn with matplotlib; nothing loads from elsewhere), rendered
from every record in OUT.  Per assignment:

- the score distribution over the submissions that were graded (the
  gradebook's score where a grader changed it), and apart from it the
  submissions that were missing or could not be graded;
- per graded function, what went wrong, from the checks' structured
  outcomes (``model.Outcome``), never from their English: wrong (by
  diagnosis: the course's name for the mistake where a check named one,
  else the kind of difference or the check's own name), raised (by the
  exception's type: a standard-library name or "another exception", never
  a student's own class name), not attempted, timed out or stopped, and
  lost points only because a function it relies on is wrong;
- the likely causes: the mistakes the course named, ranked by how many
  students they hit, numbers that differ between students shown as "…";
- the pass rate of each test cell's visible and hidden checks, and of
  every visible check.

Hidden checks appear only as counts per test cell ("hidden checks of
test_x: 63% passed"): their names (which embed sizes) and their messages are
never read here, and neither is any code or anything else a student wrote.
"""
import io
import re
import statistics
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from .model import NO_MANUAL, Diagnosis, Kind, final_score
from .report import render_template

NAME = "class-report.html"
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
TOP = 12  # causes listed first, across the class
COLORS = {"visible": "#1f77b4", "hidden": "#ff7f0e", "bars": "#4c72b0"}

# How a failure is listed, per kind and per diagnosis (the grader's words).
KIND_WORDS = {
    Kind.NOT_IMPLEMENTED: "not attempted (the stub is still there)",
    Kind.DEPENDENCY: "lost points only because a function it relies on is wrong",
    Kind.TIMED_OUT: "ran out of time",
    Kind.CRASHED: "its process stopped (a crash, the memory limit, ...)",
    Kind.STOPPED: "the test cell stopped before its checks ran",
}
DIAGNOSIS_WORDS = {
    Diagnosis.SHAPE: "wrong shape",
    Diagnosis.TRANSPOSED: "transposed",
    Diagnosis.SIGN: "sign flipped",
    Diagnosis.FACTOR: "off by a constant factor",
    Diagnosis.ZEROS: "all zeros",
    Diagnosis.NONFINITE: "nan or inf where the value is finite",
    Diagnosis.DIFFERENCE: "wrong values (no cause named)",
    Diagnosis.TYPE: "wrong type of result (None, not a number, missing keys)",
    Diagnosis.COUNT: "returns the wrong number of values",
    Diagnosis.RAISES: "does not raise the exception its contract names",
}


def function_of(check):
    """The graded function a check is about: the first word of its name (the
    course names every check after its function, ``checks.check``)."""
    return re.split(r"[\s:(]", check.name, 1)[0]


def problem_of(check):
    """(kind words, detail) for a failed visible check: what the report lists."""
    o = check.outcome
    if o.kind is Kind.WRONG:
        if o.diagnosis is Diagnosis.NAMED:
            return "wrong", o.cause
        if o.diagnosis is Diagnosis.OTHER or o.diagnosis is None:
            return "wrong", f"failed the check “{check.name}”"
        return "wrong", DIAGNOSIS_WORDS[o.diagnosis]
    if o.kind is Kind.RAISED:
        return "raised", o.exception
    return KIND_WORDS[o.kind], ""


def _pattern(text):
    """(the text with its numbers taken out, the numbers)."""
    return tuple(NUMBER.split(text)), tuple(NUMBER.findall(text))


def _show(parts, numbers):
    """The text of a pattern: a number shared by every instance stays, one
    that differs between them becomes '…'."""
    out = [parts[0]]
    for j, rest in enumerate(parts[1:]):
        seen = {n[j] for n in numbers}
        out += [seen.pop() if len(seen) == 1 else "…", rest]
    return "".join(out)


@dataclass
class Tally:
    passed: int = 0
    total: int = 0

    def add(self, ok):
        self.passed += bool(ok)
        self.total += 1

    @property
    def rate(self):
        return self.passed / self.total if self.total else None

    @property
    def pct(self):
        return "–" if self.rate is None else f"{100 * self.rate:.0f}%"

    @property
    def width(self):
        return f"{100 * (self.rate or 0):.0f}%"


@dataclass
class Problem:
    function: str
    kind: str
    text: str
    students: int
    checks: list


@dataclass
class Summary:
    aid: str
    max_score: float
    scores: list
    graded: int
    not_graded: list          # (student, status) of the submissions that were not graded
    statuses: Counter
    problems: list            # per function, what went wrong (Problem)
    causes: list              # the named mistakes, ranked (Problem)
    cells: OrderedDict = field(default_factory=OrderedDict)   # cell -> {"visible", "hidden"}
    checks: OrderedDict = field(default_factory=OrderedDict)  # (cell, name) -> Tally

    @property
    def causes_pairs(self):
        return [(self.aid, c) for c in self.causes]

    @property
    def mean(self):
        return f"{statistics.fmean(self.scores):.3g}" if self.scores else "–"

    @property
    def median(self):
        return f"{statistics.median(self.scores):.3g}" if self.scores else "–"


def summarise(records, aid, max_score, manual=None):
    """The numbers of one assignment's class report from its records."""
    manual = manual or {}
    rows = [r for r in records if r.submission.assignment == aid]
    graded = [r for r in rows if r.result.graded]
    summary = Summary(
        aid=aid, max_score=max_score, graded=len(graded),
        scores=[final_score(r.result, manual.get((r.submission.student, aid), NO_MANUAL))
                for r in graded],
        not_graded=sorted((r.submission.student, r.result.status.value)
                          for r in rows if not r.result.graded),
        statuses=Counter(r.result.status.value for r in rows), problems=[], causes=[])
    found = {}  # (function, kind, pattern) -> {"students", "numbers", "checks"}
    for r in graded:
        student = r.submission.student
        for c in r.result.checks:
            kind = "hidden" if c.hidden else "visible"
            summary.cells.setdefault(c.cell, {"visible": Tally(), "hidden": Tally()})[kind].add(
                c.passed)
            if c.hidden:
                continue  # counted above; never named
            summary.checks.setdefault((c.cell, c.name), Tally()).add(c.passed)
            if c.passed:
                continue
            what, detail = problem_of(c)
            parts, numbers = _pattern(detail)
            entry = found.setdefault((function_of(c), what, parts),
                                     {"students": set(), "numbers": [], "checks": OrderedDict(),
                                      "named": c.outcome.diagnosis is Diagnosis.NAMED})
            entry["students"].add(student)
            entry["numbers"].append(numbers)
            entry["checks"][c.name] = None
    for (function, what, parts), e in found.items():
        p = Problem(function, what, _show(parts, e["numbers"]), len(e["students"]),
                    list(e["checks"]))
        summary.problems.append(p)
        if e["named"]:
            summary.causes.append(p)
    order = (lambda p: (-p.students, p.function, p.kind, p.text))
    summary.problems.sort(key=lambda p: (p.function, -p.students, p.kind, p.text))
    summary.causes.sort(key=order)
    return summary


# ----------------------------------------------------------------------------
# Plots


def _svg(fig, salt, label):
    """A matplotlib figure as inline SVG, the same bytes for the same data."""
    import matplotlib
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg[svg.index("<svg"):], flags=re.S)
    label = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)


def histogram(s):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5.2, 2.4))
    ax = fig.subplots()
    top = max([s.max_score] + s.scores)
    ax.hist(s.scores, bins=10, range=(0, top or 1), color=COLORS["bars"], edgecolor="white")
    ax.axvline(s.max_score, color="#444", linestyle="--", linewidth=1)
    ax.set_xlabel(f"score (maximum {s.max_score:g}, dashed)")
    ax.set_ylabel("submissions")
    ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _svg(fig, f"{s.aid}-scores", f"Histogram of the {len(s.scores)} scores of the "
                f"graded submissions of {s.aid}")


def cell_bars(s):
    from matplotlib.figure import Figure
    names = list(s.cells)
    fig = Figure(figsize=(5.2, 0.45 * len(names) + 0.9))
    ax = fig.subplots()
    y = range(len(names))
    for kind, dy in (("visible", -0.2), ("hidden", 0.2)):
        rates = [s.cells[n][kind].rate for n in names]
        ax.barh([i + dy for i in y], [100 * (r or 0) for r in rates], height=0.4,
                color=COLORS[kind], label=f"{kind} checks")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of checks passed, over the graded submissions")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize="small",
              frameon=False)
    fig.tight_layout()
    return _svg(fig, f"{s.aid}-cells", f"Pass rates of the visible and hidden checks "
                f"of each test cell of {s.aid}")


# ----------------------------------------------------------------------------
# The page


def page(records, assignments, manual=None):
    """The class report's HTML."""
    from markupsafe import Markup
    aids = [a for a in sorted(assignments)
            if any(r.submission.assignment == a for r in records)]
    sums = [summarise(records, a, assignments[a].max_score, manual) for a in aids]
    students = {r.submission.student for r in records}
    everywhere = sorted(((s.aid, c) for s in sums for c in s.causes),
                        key=lambda ac: (-ac[1].students, ac[0], ac[1].function, ac[1].text))
    plots = {s.aid: {"histogram": Markup(histogram(s)) if s.scores else None,
                     "cells": Markup(cell_bars(s)) if s.cells else None} for s in sums}
    return render_template("class-report.html.j2", records=len(records),
                           students=len(students), summaries=sums, plots=plots,
                           everywhere=everywhere[:TOP])
