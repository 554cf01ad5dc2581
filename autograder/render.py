"""Every view of OUT, rendered from the records (``store``) and the gradebook.

``Views`` is the one step from a ``model.Record`` to the files people read;
``grade`` runs it as each result arrives and at the end of a run, and
``python -m autograder render OUT`` runs it again over every record, for
example after manual grading in the formgrader: then every file shows the
gradebook's score and the grader's comments.

    return/<student>/<assignment>/   for the student, safe to hand back as it is:
        feedback.html                the feedback page (report.feedback_html)
        results.json                 Gradescope's format (report.gradescope_results)
        <assignment>.ipynb           the autograded notebook
    autograded/<student>/<assignment>/<assignment>.ipynb, gradebook.db
                                     nbgrader's (nbgrader_course)
    grades.csv, grades-wide.csv      one row per submission; one per student
    class-report.html                what the class got wrong (classreport)

Nothing under ``return/`` holds a hidden check's name, input or value: hidden
checks appear only as "k of n passed" and their points.  The instructor's
files are everything else (``records/`` holds every check in full).
"""
import shutil
import sys
from pathlib import Path

from . import classreport, course, nbgrader_course, report
from .model import NO_MANUAL

RETURN = "return"
WIDE_CSV = "grades-wide.csv"


class Views:
    """Renders OUT's views (see the module docstring); ``close`` when done."""

    def __init__(self, out, db_url=None):
        self.out = Path(out)
        self.assignments = {aid: course.load(aid) for aid in course.assignments()}
        url = db_url or f"sqlite:///{(self.out / 'gradebook.db').resolve()}"
        self.course = nbgrader_course.CourseRoot(self.out, url, self.assignments,
                                                 default_db=db_url is None)
        self.manual = {}

    def keep_submitted(self, record):
        self.course.keep_submitted(record)

    def returned(self, student, aid=None):
        folder = self.out / RETURN / student
        return folder / aid if aid else folder

    def submission(self, record):
        """The views of one submission: its gradebook grades and autograded
        notebook, then the student's folder, with what a grader changed by hand."""
        sub = record.submission
        manual = NO_MANUAL
        try:
            autograded, manual = self.course.add(record)
        except Exception as exc:  # that submission's nbgrader files only
            autograded = None
            print(f"could not record {sub.student}/{sub.assignment} for nbgrader: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
        self.manual[(sub.student, sub.assignment)] = manual
        folder = self.returned(sub.student, sub.assignment)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            report.write_text(folder / "feedback.html",
                              report.feedback_html(sub.student, sub.assignment, record.result,
                                                   manual))
            report.write_text(folder / "results.json", report.results_json(record.result, manual))
            notebook = folder / f"{sub.assignment}.ipynb"
            if autograded is not None:
                nbgrader_course.write_notebook(notebook, autograded)
            elif notebook.exists():
                notebook.unlink()
        except Exception as exc:  # that student's files only
            shutil.rmtree(folder, ignore_errors=True)
            print(f"could not write the feedback of {sub.student}/{sub.assignment}: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)

    def refresh(self, records):
        """Render again the views of the records this run did not grade whose
        gradebook entries a grader changed by hand, so that every view shows
        the gradebook's score (``grade --resume`` after manual grading)."""
        for r in records:
            k = (r.submission.student, r.submission.assignment)
            if k in self.manual or r.submission.assignment not in self.assignments:
                continue
            manual = self.course.gradebook.manual(*k)
            if manual == NO_MANUAL:
                self.manual[k] = manual
            else:
                self.submission(r)

    def class_files(self, records, loose=()):
        """grades.csv, grades-wide.csv and the class report from ``records``
        (and ``loose``: records of no assignment, shown as rows only);
        returns the rows."""
        rows = []
        for r in list(records) + list(loose):
            k = (r.submission.student, r.submission.assignment)
            if k not in self.manual and r.submission.assignment in self.assignments:
                self.manual[k] = self.course.gradebook.manual(*k)
            rows.append(report.row(r.submission, r.result, self.manual.get(k, NO_MANUAL)))
        rows.sort(key=lambda r: (r.student_id, r.assignment))
        report.write_csv(self.out / "grades.csv", rows)
        report.write_wide_csv(self.out / WIDE_CSV, rows, self.assignments)
        try:
            report.write_text(self.out / classreport.NAME,
                              classreport.page(records, self.assignments, self.manual))
        except Exception as exc:  # the grades are written; the report is extra
            print(f"could not write the class report: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
        return rows

    def close(self):
        self.course.close()


def render_all(out, db_url=None):
    """Render every view of OUT again from its records; returns the rows."""
    from .store import read_records
    views = Views(out, db_url)
    try:
        records = read_records(out)
        for r in records:
            if r.submission.assignment in views.assignments:
                views.submission(r)
        return views.class_files(records)
    finally:
        views.close()
