"""OUT, the record of a class's grades, and its one writer.

Every graded submission leaves ``OUT/<student>/<assignment>/record.json``
(its status, score and full result, and the key it was graded under) beside
the learner's ``results.json`` and ``feedback.html``; the ``Store`` writes
them, and its grade in the gradebook, as each result arrives.  At the end of
a run it rebuilds the class-wide files from *every* record in OUT, not only
this run's:

- ``grades.csv``: one row per submission (student, assignment, score, ...);
- ``grades-wide.csv``: one row per student, one column per assignment (the
  shape an LMS gradebook imports);
- ``grading.json``: the settings and times of the last run.

So grading some students again (``--only``, or a folder holding only them)
updates their rows and keeps everyone else's, and grades.csv and the
gradebook always agree.  ``--resume`` skips a submission whose record was
made from the same notebook bytes, seed, limits, course and grader
(``key``): an interrupted run picks up where it stopped.
"""
import csv
import hashlib
import json
from pathlib import Path

from . import course, report

RECORD = "record.json"
WIDE_CSV = "grades-wide.csv"
_HERE = Path(__file__).resolve().parent


def key(path, aid, seed, limits):
    """What a grade depends on: the notebook's bytes, the seed, the limits,
    the assignment's sources and the grader's code."""
    h = hashlib.sha256()
    try:
        h.update(Path(path).read_bytes() if path is not None else b"<missing>")
    except OSError:
        h.update(b"<unreadable>")
    h.update(json.dumps([aid, seed, vars(limits)], sort_keys=True, default=str).encode())
    if aid in course.assignments():
        h.update(course.digest(aid).encode())
    for p in sorted(_HERE.glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()


class Store:
    """The one writer of OUT (see the module docstring)."""

    def __init__(self, out, db_url=None, seed=0):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or f"sqlite:///{(self.out / 'gradebook.db').resolve()}"
        self.seed = seed
        self.loose = []  # rows of this run that have no folder (an unknown assignment)
        self.assignments = {aid: course.load(aid) for aid in course.assignments()}
        self.gradebook = report.GradebookWriter(self.db_url, self.assignments)

    def folder(self, student, aid):
        return self.out / student / aid

    def recorded(self, student, aid, key_):
        """The row of an earlier run with the same key, or None."""
        try:
            rec = json.loads((self.folder(student, aid) / RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return rec if rec.get("key") == key_ else None

    def add(self, student, aid, status, result, key_=None):
        """Write one submission's files and its grade in the gradebook."""
        row = {"student_id": student, "assignment": aid, "score": result["score"],
               "max_score": result["max_score"], "status": status, "seed": result.get("seed"),
               "message": report.summary(status, result)}
        if aid not in self.assignments:
            self.loose.append(row)
            return row
        try:
            report.write_submission(self.out, student, aid, result)
            kept = {k: v for k, v in result.items() if k != "seconds"}  # timings: grading.json
            (self.folder(student, aid) / RECORD).write_text(json.dumps(
                {"row": row, "key": key_, "result": kept}, indent=1, sort_keys=True),
                encoding="utf-8", errors="replace")
        except Exception as exc:  # that student's files only
            row["status"] = "grader-error"
            row["message"] = f"Writing this submission's report failed: {type(exc).__name__}"
        self.gradebook.add(student, aid, result)
        return row

    def records(self):
        """Every record in OUT, sorted by student and assignment."""
        found = []
        for p in sorted(self.out.glob(f"*/*/{RECORD}")):
            try:
                found.append(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return found

    def finish(self, settings):
        """Rebuild the class-wide files from every record; returns the rows."""
        self.gradebook.close()
        rows = sorted([r["row"] for r in self.records()] + self.loose,
                      key=lambda r: (r["student_id"], r["assignment"]))
        report.write_csv(self.out, rows)
        write_wide_csv(self.out / WIDE_CSV, rows, self.assignments)
        (self.out / "grading.json").write_text(json.dumps(settings, indent=2, default=str))
        return rows


def write_wide_csv(path, rows, assignments):
    """One row per student, the score of each assignment in its own column
    (blank where nothing was submitted), and a row of maximum scores."""
    aids = sorted({r["assignment"] for r in rows} & set(assignments))
    by = {}
    for r in rows:
        if r["assignment"] in aids:
            by.setdefault(r["student_id"], {})[r["assignment"]] = r["score"]
    with open(path, "w", newline="", encoding="utf-8", errors="replace") as f:
        w = csv.writer(f)
        w.writerow(["student_id"] + aids)
        w.writerow(["(maximum)"] + [assignments[a].max_score for a in aids])
        for student in sorted(by):
            w.writerow([report._cell(student)] + [by[student].get(a, "") for a in aids])
