"""What the class got wrong: ``OUT/class-report.html``, from the records of a class.

One static page (inline CSS, plots as inline SVG drawn with matplotlib;
nothing loads from elsewhere), rebuilt from every record in OUT at the end
of a grading run.  Per assignment:

- the score distribution, and how many submissions could not be graded;
- the pass rate of each test cell's visible and hidden checks, and of every
  visible check;
- the likely causes: the messages of failed visible checks that name a
  cause ("dW is wrong: it is divided by the batch size ..."), grouped per
  graded function, numbers that differ between students replaced by "…",
  ranked by how many students they hit.

Hidden checks appear only as counts per test cell ("hidden checks of
test_x: 63% passed"): their names (which embed sizes) and their messages are
never read here, and neither is any code.  Messages that name no cause are
left out of the causes: "not implemented yet", errors the student's code
raised (their text is the student's), "the largest difference is ..." (a
symptom), and "fix f first" (the cause is in f's own checks).
"""
import html
import io
import re
import statistics
from collections import Counter, OrderedDict

from . import report

NAME = "class-report.html"
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
NO_CAUSE = ("not implemented yet", "your code raised", "your code could not finish",
            "the checks could not run", "not run:", "this check uses your")
WRONG = " is wrong: "
TOP = 12  # causes listed first, across the class
COLORS = {"visible": "#1f77b4", "hidden": "#ff7f0e", "bars": "#4c72b0"}


# ----------------------------------------------------------------------------
# From records to numbers


def cause_of(message):
    """(what, cause) for a visible check's message that names a cause, else None."""
    first = message.strip().split("\n", 1)[0].strip()
    if not first or first.lower().startswith(NO_CAUSE):
        return None
    what, cause = (first.split(WRONG, 1) if WRONG in first else (None, first))
    if cause.startswith(("the largest difference is", "expected ")):
        return None
    return what, cause


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


def summarise(records, aid):
    """The numbers of one assignment's class report from its records."""
    rows = [r for r in records if r["row"]["assignment"] == aid]
    graded = [r for r in rows if r["row"]["status"] == "graded"]
    checks = OrderedDict()    # (cell, name) -> [passed, total] over graded submissions
    cells = OrderedDict()     # cell -> {"visible": [passed, total], "hidden": [...]}
    causes = {}               # (function, pattern) -> {"students", "numbers", "whats", "checks"}
    for r in graded:
        student = r["row"]["student_id"]
        for t in r["result"].get("tests", []):
            kind = t["visibility"]
            tally = cells.setdefault(t["cell"], {"visible": [0, 0], "hidden": [0, 0]})[kind]
            tally[0] += report.passed(t)
            tally[1] += 1
            if kind == "hidden":
                continue  # counted above; never named
            c = checks.setdefault((t["cell"], t["name"]), [0, 0])
            c[0] += report.passed(t)
            c[1] += 1
            found = None if report.passed(t) else cause_of(t["output"])
            if found is None:
                continue
            what, cause = found
            parts, numbers = _pattern(cause)
            entry = causes.setdefault((t["name"].split(":")[0].strip(), parts),
                                      {"students": set(), "numbers": [], "whats": set(),
                                       "checks": OrderedDict()})
            entry["students"].add(student)
            entry["numbers"].append(numbers)
            entry["whats"].add(what)
            entry["checks"][t["name"]] = None
    ranked = []
    for (function, parts), e in causes.items():
        what = next(iter(e["whats"])) if len(e["whats"]) == 1 else None
        text = _show(parts, e["numbers"])
        ranked.append({"function": function, "students": len(e["students"]),
                       "text": f"{what}{WRONG}{text}" if what else text,
                       "checks": list(e["checks"])})
    ranked.sort(key=lambda c: (-c["students"], c["function"], c["text"]))
    scores = [r["row"]["score"] for r in rows]
    statuses = Counter(r["row"]["status"] for r in rows)
    return {"aid": aid, "rows": len(rows), "graded": len(graded), "scores": scores,
            "statuses": statuses, "checks": checks, "cells": cells, "causes": ranked}


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
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label)}" ', 1)


def histogram(s, max_score):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5.2, 2.4))
    ax = fig.subplots()
    top = max([max_score] + s["scores"])
    ax.hist(s["scores"], bins=10, range=(0, top or 1), color=COLORS["bars"], edgecolor="white")
    ax.axvline(max_score, color="#444", linestyle="--", linewidth=1)
    ax.set_xlabel(f"score (maximum {max_score:g}, dashed)")
    ax.set_ylabel("submissions")
    ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return _svg(fig, f"{s['aid']}-scores", f"Histogram of the {len(s['scores'])} scores "
                f"of {s['aid']}")


def cell_bars(s):
    from matplotlib.figure import Figure
    names = list(s["cells"])
    fig = Figure(figsize=(5.2, 0.45 * len(names) + 0.9))
    ax = fig.subplots()
    y = range(len(names))
    for kind, dy in (("visible", -0.2), ("hidden", 0.2)):
        rates = [_rate(s["cells"][n][kind]) for n in names]
        ax.barh([i + dy for i in y], [100 * (r or 0) for r in rates], height=0.4,
                color=COLORS[kind], label=f"{kind} checks")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of checks passed, over the graded submissions")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize="small",
              frameon=False)
    fig.tight_layout()
    return _svg(fig, f"{s['aid']}-cells", f"Pass rates of the visible and hidden checks "
                f"of each test cell of {s['aid']}")


# ----------------------------------------------------------------------------
# The page


def _rate(tally):
    return tally[0] / tally[1] if tally[1] else None


def _pct(tally):
    r = _rate(tally)
    return "–" if r is None else f"{100 * r:.0f}%"


def _bar(tally):
    r = _rate(tally) or 0.0
    return (f"<span class='bar'><span style='width:{100 * r:.0f}%'></span></span> "
            f"{_pct(tally)} <span class='n'>({tally[0]} of {tally[1]})</span>")


def _causes_table(causes, with_assignment=False):
    e = html.escape
    if not causes:
        return "<p>No failed visible check named a cause.</p>"
    head = ("<th>assignment</th>" if with_assignment else "")
    out = [f"<table><tr>{head}<th>students</th><th>function</th><th>likely cause</th>"
           "<th>seen in the checks</th></tr>"]
    for c in causes:
        first = f"<td>{e(c['aid'])}</td>" if with_assignment else ""
        shown = c["checks"][:3] + ([f"and {len(c['checks']) - 3} more"] if len(c["checks"]) > 3
                                   else [])
        out.append(f"<tr>{first}<td class='num'>{c['students']}</td><td>{e(c['function'])}</td>"
                   f"<td>{e(c['text'])}</td><td>{'<br>'.join(map(e, shown))}</td></tr>")
    return "\n".join(out + ["</table>"])


def _section(s, max_score):
    e = html.escape
    aid = s["aid"]
    states = ", ".join(f"{n} {k}" for k, n in sorted(s["statuses"].items()))
    scores = s["scores"]
    parts = [f"<h2 id='{e(aid)}'>{e(aid)}</h2>",
             f"<p>{s['rows']} submissions ({e(states)}); mean score "
             f"{statistics.fmean(scores):.3g}, median {statistics.median(scores):.3g} "
             f"of {max_score:g}.</p>",
             f"<figure>{histogram(s, max_score)}<figcaption>Scores of {e(aid)}: every "
             "submission recorded, including those that could not be graded (0).</figcaption>"
             "</figure>",
             "<h3>Likely causes, by the number of students they hit</h3>",
             _causes_table(s["causes"])]
    if s["cells"]:
        parts += ["<h3>Test cells</h3>",
                  f"<figure>{cell_bars(s)}<figcaption>Share of the checks of each test cell "
                  "that passed, over the graded submissions.</figcaption></figure><ul>"]
        for cell, t in s["cells"].items():
            line = f"visible checks of {e(cell)}: {_pct(t['visible'])} passed"
            if t["hidden"][1]:
                line += f"; hidden checks of {e(cell)}: {_pct(t['hidden'])} passed"
            parts.append(f"<li>{line}</li>")
        parts.append("</ul><h3>Every visible check</h3><table><tr><th>test cell</th>"
                     "<th>check</th><th>passed</th></tr>")
        for (cell, name), tally in s["checks"].items():
            parts.append(f"<tr><td>{e(cell)}</td><td>{e(name)}</td><td>{_bar(tally)}</td></tr>")
        parts.append("</table>")
    return "\n".join(parts)


STYLE = ("body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em;"
         "line-height:1.4;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}"
         "td,th{padding:.25em .7em;text-align:left;vertical-align:top;"
         "border-bottom:1px solid #ddd}td.num{text-align:right}.n{color:#666;font-size:90%}"
         ".bar{display:inline-block;width:8em;height:.8em;background:#eee;"
         "vertical-align:middle}.bar span{display:block;height:100%;background:#4c72b0}"
         "figure{margin:1em 0}figcaption{color:#555;font-size:90%}svg{max-width:100%;"
         "height:auto}")


def page(records, assignments):
    """The class report's HTML."""
    e = html.escape
    aids = [a for a in sorted(assignments) if any(r["row"]["assignment"] == a for r in records)]
    sums = [summarise(records, a) for a in aids]
    students = {r["row"]["student_id"] for r in records}
    everywhere = sorted((dict(c, aid=s["aid"]) for s in sums for c in s["causes"]),
                        key=lambda c: (-c["students"], c["aid"], c["function"], c["text"]))
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>What the class got wrong</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>What the class got wrong</h1>",
             f"<p>{len(records)} submissions of {len(students)} students. Pass rates count "
             "the graded submissions; hidden checks are counted per test cell, never named. "
             "Likely causes are the diagnoses of failed visible checks, numbers that differ "
             "between students shown as …; failures that name no cause (not implemented, "
             "an error of the student's code, a plain difference, a check that relies on "
             "another function) are left out.</p>",
             "<nav>" + " · ".join(f"<a href='#{e(a)}'>{e(a)}</a>" for a in aids) + "</nav>",
             "<h2>Likely causes across the class</h2>",
             _causes_table(everywhere[:TOP], with_assignment=True)]
    for s in sums:
        parts.append(_section(s, assignments[s["aid"]].max_score))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(path, records, assignments):
    path.write_text(page(records, assignments), encoding="utf-8", errors="replace")
