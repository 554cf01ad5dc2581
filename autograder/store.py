"""OUT, the record of a class's grades, and its one writer.

The truth about a graded submission is its record,
``OUT/records/<student>/<assignment>.json`` (a ``model.Record``: the
submission as found, what grading found, and the key it was graded under,
in ``model``'s one serialisation); the ``Store`` writes it, and the copy of
the notebook in ``submitted/``, as each result arrives.  Everything else is
a view of the records that ``render`` makes and can make again at any time
(``python -m autograder render OUT``), with what a grader entered by hand in
the gradebook:

- for the student, ``OUT/return/<student>/``: one folder per student, safe
  to hand back as it is: ``<assignment>/feedback.html``, ``results.json``
  and the autograded notebook (hidden checks only as counts);
- for the instructor: ``grades.csv``, ``grades-wide.csv``,
  ``class-report.html``, and nbgrader's files (the gradebook,
  ``autograded/``): see ``render``;
- ``grading.json``: the settings, times and workers of the last run, and how
  many records it kept from earlier runs.

So grading some students again (``--only``, or a folder holding only them)
updates their records and keeps everyone else's, and every view agrees.
``--resume`` skips a submission whose record was made from the same
notebook bytes, seed, limits, course and grader (``key``): an interrupted
run picks up where it stopped.
"""
import dataclasses
import functools
import hashlib
import json
from pathlib import Path

from . import course, model, render

RECORDS = "records"


def key(path, aid, seed, limits, grading_key=None):
    """What a grade depends on: the notebook's bytes, the seed, the limits,
    the assignment's sources, the grader's and the course's files, and the
    course key (by its hash)."""
    h = hashlib.sha256()
    try:
        h.update(Path(path).read_bytes() if path is not None else b"<missing>")
    except OSError:
        h.update(b"<unreadable>")
    # Numbers by value: Limits(cell_timeout=20) and Limits(cell_timeout=20.0) are equal.
    values = {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
              for k, v in dataclasses.asdict(limits).items()}
    h.update(json.dumps([aid, seed, values], sort_keys=True, default=str).encode())
    h.update(_grader_digest())  # the assignment's sources and the reference are in it
    h.update(hashlib.sha256(grading_key or b"").digest())  # another course key: other inputs
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _grader_digest():
    """The grader's code and the course's files, hashed once per run."""
    return course.files_hash().encode()


def record_path(out, student, aid):
    return Path(out) / RECORDS / student / f"{aid}.json"


def read_records(out):
    """Every record in OUT, sorted by student and assignment."""
    found = []
    for p in sorted(Path(out).glob(f"{RECORDS}/*/*.json")):
        try:
            found.append(model.loads(model.Record, p.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return found


class Store:
    """The one writer of OUT (see the module docstring)."""

    def __init__(self, out, db_url=None, seed=0):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.loose = []  # this run's submissions of no assignment of the course: rows only
        self.graded = 0
        self.views = render.Views(self.out, db_url)

    def recorded(self, student, aid, key_):
        """The record of an earlier run with the same key, or None."""
        try:
            rec = model.loads(model.Record, record_path(self.out, student, aid)
                              .read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, KeyError):
            return None
        return rec if rec.key == key_ else None

    def add(self, graded, key_=""):
        """Record one submission and render its views."""
        sub = graded.submission
        self.graded += 1
        if sub.assignment not in self.views.assignments:
            self.loose.append(model.Record(sub, graded.result, key_))
            return
        record = model.Record(sub, graded.result, key_)
        path = record_path(self.out, sub.student, sub.assignment)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(model.dumps(record), encoding="utf-8", errors="replace")
        self.views.keep_submitted(record)
        self.views.submission(record)

    def finish(self, settings):
        """Render the class-wide views from every record; returns grades.csv's rows."""
        try:
            records = read_records(self.out)
            self.views.refresh(records)
            rows = self.views.class_files(records, self.loose)
        finally:
            self.views.close()
        kept = len(rows) - self.graded
        settings = dict(settings, **{"kept from an earlier run": max(0, kept)})
        (self.out / "grading.json").write_text(json.dumps(settings, indent=2, default=str))
        return rows
