"""One job, graded: the function every executor runs, and the results an
executor hands back when a grading never finished.

``grade_job(job)`` reads (or takes) the notebook, grades it and returns a
``model.Graded``; it never raises for anything a submission does.  An
executor (``executors.pool``, ``executors.dask``) that loses a job (its
process died, or it outlasted ``wall_limit``) hands back ``crashed(job, why)``
instead, with one of the sentences below.
"""
import dataclasses
import time
from pathlib import Path

from . import course, grade, model

STOPPED_THE_GRADER = ("Grading this submission stopped the grader's own process; "
                      "it was scored 0. The instructor can see why in the logs.")
LOST = "The grader lost this submission's task; it was scored 0."


def did_not_finish(limit):
    return f"Grading this submission did not finish in {limit:g} s; it was stopped and scored 0."


def failed(exc):
    return f"The grader failed on this submission: {type(exc).__name__}: {exc}"


def wall_limit(limits):
    """Wall-clock seconds after which a grading is abandoned: both passes at
    their time limits, on a machine several times slower than an idle one."""
    return 4 * 2 * limits.notebook_timeout + 120.0


def _max_score(aid):
    try:
        return course.load(aid).max_score if aid in course.assignments() else 0.0
    except Exception:
        return 0.0


def _notes(sub, *more):
    return ([sub.note] if sub.note else []) + [m for m in more if m]


def grade_job(job):
    """Grade one job: a ``model.Graded``, whatever the submission holds."""
    t0 = time.monotonic()
    sub = job.submission
    try:
        result = _grade(job, sub)
    except Exception as exc:  # the grader must go on with the next student
        result = model.not_graded(model.Status.GRADER_ERROR, _max_score(sub.assignment),
                                  _notes(sub, failed(exc)), job.seed)
    return model.Graded(sub, result, seconds=round(time.monotonic() - t0, 3))


def _grade(job, sub):
    aid = sub.assignment
    if aid not in course.assignments() or (sub.path is None and job.notebook is None
                                           and job.unreadable is None):
        return model.not_graded(model.Status.MISSING, _max_score(aid), _notes(sub), job.seed)
    if job.notebook is not None or job.unreadable is not None:
        nb, problem = grade.read_submission((job.notebook, job.unreadable))
    else:
        nb, problem = grade.read_submission(Path(sub.path))
    if nb is None:
        return model.not_graded(model.Status.UNREADABLE, _max_score(aid), _notes(sub, problem),
                                job.seed)
    result = grade.grade_notebook(course.load(aid), nb, job.limits, job.seed, job.key)
    return dataclasses.replace(result, notes=tuple(_notes(sub)) + result.notes)


def crashed(job, why):
    """The result of a job whose grading never came back."""
    sub = job.submission
    return model.Graded(sub, model.not_graded(model.Status.CRASHED, _max_score(sub.assignment),
                                              _notes(sub, why), job.seed))


def carried(job):
    """The job with the notebook's bytes in it (read here, where the file lies)."""
    if job.submission.path is None or job.notebook is not None:
        return job
    data, problem = grade.load_submission(Path(job.submission.path))
    return dataclasses.replace(job, notebook=data, unreadable=problem)
