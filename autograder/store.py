"""OUT, the record of a class's grades, and its one writer.

Every graded submission leaves ``OUT/<student>/<assignment>/record.json``
(its status, score and full result, and the key it was graded under) beside
the learner's ``results.json`` and ``feedback.html``; the ``Store`` writes
them, and through ``nbgrader_course.CourseRoot`` the submission's copy in
``submitted/``, its autograded notebook and its grades in the gradebook, as
each result arrives.  At the end of a run it rebuilds the class-wide files
from *every* record in OUT, not only this run's:

- ``grades.csv``: one row per submission (student, assignment, score, ...);
  a submission a grader changed by hand in the gradebook (the formgrader's
  manual points) has the gradebook's score, and its message says so;
- ``grades-wide.csv``: a header and one row per student, one column per
  assignment (the shape an LMS gradebook imports);
- ``class-report.html``: what the class got wrong (``classreport``);
- ``grading.json``: the settings and times of the last run.

So grading some students again (``--only``, or a folder holding only them)
updates their rows and keeps everyone else's, and grades.csv, grades-wide.csv
and the gradebook always agree.  ``--resume`` skips a submission whose record was
made from the same notebook bytes, seed, limits, course and grader
(``key``): an interrupted run picks up where it stopped.
"""
import csv
import functools
import hashlib
import json
import sys
from pathlib import Path

from . import classreport, course, nbgrader_course, report

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
    h.update(_grader_digest())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _grader_digest():
    """The grader's own code, hashed once per run rather than per submission."""
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(_HERE.glob("*.py")))).digest()


class Store:
    """The one writer of OUT (see the module docstring)."""

    def __init__(self, out, db_url=None, seed=0):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or f"sqlite:///{(self.out / 'gradebook.db').resolve()}"
        self.seed = seed
        self.loose = []  # rows of this run that have no folder (an unknown assignment)
        self.assignments = {aid: course.load(aid) for aid in course.assignments()}
        self.course = nbgrader_course.CourseRoot(self.out, self.db_url, self.assignments,
                                                 default_db=db_url is None)

    def folder(self, student, aid):
        return self.out / student / aid

    def recorded(self, student, aid, key_):
        """The row of an earlier run with the same key, or None."""
        try:
            rec = json.loads((self.folder(student, aid) / RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return rec if rec.get("key") == key_ else None

    def add(self, student, aid, status, result, key_=None, folder=None, path=None):
        """Write one submission's files and its grade in the gradebook.

        result may carry the submission's autograded notebook (``"autograded"``,
        made where it was graded); folder and path: where the submission and
        its notebook were found."""
        autograded = result.pop("autograded", None)
        result = {k: v for k, v in result.items() if k != "seconds"}  # times: grading.json
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
        self.course.add(student, aid, status, result, autograded, folder, path)
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
        records = self.records()
        try:
            manual = self.course.gradebook.manual_scores()
        finally:
            self.course.close()
        rows = sorted([with_manual(r["row"], manual) for r in records] + self.loose,
                      key=lambda r: (r["student_id"], r["assignment"]))
        report.write_csv(self.out, rows)
        write_wide_csv(self.out / WIDE_CSV, rows, self.assignments)
        try:
            classreport.write(self.out / classreport.NAME, records, self.assignments)
        except Exception as exc:  # the grades are written; the report is extra
            print(f"could not write the class report: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
        (self.out / "grading.json").write_text(json.dumps(settings, indent=2, default=str))
        return rows


def with_manual(row, manual):
    """The row with the gradebook's score where a grader changed it by hand."""
    score = manual.get((row["student_id"], row["assignment"]))
    if score is None or abs(score - row["score"]) < 1e-9:
        return row
    note = f"Includes manual grading in the gradebook (autograder: {row['score']:g})."
    return dict(row, score=round(score, 4), message=" ".join(filter(None, [note, row["message"]])))


def write_wide_csv(path, rows, assignments):
    """A header (student_id, then the assignment ids) and one row per student
    with the score of each assignment in its column, blank where nothing was
    recorded; the maximum scores are in grades.csv."""
    aids = sorted({r["assignment"] for r in rows} & set(assignments))
    by = {}
    for r in rows:
        if r["assignment"] in aids:
            by.setdefault(r["student_id"], {})[r["assignment"]] = r["score"]
    with open(path, "w", newline="", encoding="utf-8", errors="replace") as f:
        w = csv.writer(f)
        w.writerow(["student_id"] + aids)
        for student in sorted(by):
            w.writerow([report._cell(student)] + [by[student].get(a, "") for a in aids])
