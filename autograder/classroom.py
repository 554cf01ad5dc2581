"""Grading a whole class: find the submissions, grade them, record them.

SUBMITTED/<student_id>/<assignment>/<assignment>.ipynb  (nbgrader's layout), or an
nbgrader course root holding submitted/ (``nbgrader_course.submitted_folder``)

``grade_class`` finds the submissions (``model.Submission``), makes a
``model.Job`` of each, hands them to an executor (``pool.LocalPool`` on this
machine, ``cluster.DaskCluster`` on a Dask cluster: neither knows the other)
and gives every ``model.Graded`` to the ``Store`` as it arrives, which
records it and renders its views.  Whatever happens, every submission found
gets a record.

Student ids are folder names, and they end up in file names, spreadsheets
and the gradebook, so they are checked when submissions are found
(``student_id``): letters, digits and ``_ . @ + -``, not starting with a
character a spreadsheet reads as a formula, valid Unicode, not the name of a
grading output.  A folder that fails is still graded, under a safe id
(``invalid-<hash>``), and its row says why.
"""
import dataclasses
import hashlib
import os
import re
import sys
from pathlib import Path

from . import course, fence, nbgrader_course, secret, wire
from .jobs import wall_limit
from .model import Job, Limits, Submission
from .processes import ScratchRoot
from .store import Store, key

# Names of OUT's own files and folders (compared in lower case), and prefixes
# of names a tool may add next to them (gradebook.db-journal, say).
RESERVED = {"grades.csv", "grades-wide.csv", "grading.json", "class-report.html",
            "autograded", "feedback", "submitted", "source", "release", "downloaded",
            "nbgrader_config.py", "records", "return", "similarity.csv", "similarity.html"}
RESERVED_PREFIXES = ("gradebook", "grades", "grading", "class-report", "similarity",
                     "nbgrader-grades")
ID_PATTERN = re.compile(r"\w[\w.@+-]{0,99}")


def student_id(name):
    """(the id to use, None) for a usable folder name, else (a safe id, why not)."""
    ok = (name == wire.clean(name) and ID_PATTERN.fullmatch(name) is not None
          and name.lower() not in RESERVED and not name.lower().startswith(RESERVED_PREFIXES))
    if ok:
        return name, None
    safe = "invalid-" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return safe, (f"The folder name {ascii(name)[:120]} cannot be used as a student id "
                  "(letters, digits and _ . @ + - only, not starting with = + - @ or a dot, "
                  f"and not the name of a grading output); it was graded as {safe}.")


def find_submissions(submitted, known):
    """[model.Submission], sorted by student and assignment."""
    found = []

    def folders(p):
        return sorted(q for q in p.iterdir()
                      if q.is_dir() and not q.is_symlink() and not q.name.startswith("."))

    for sdir in folders(Path(submitted)):
        sid, id_note = student_id(sdir.name)
        for adir in folders(sdir):
            nb = adir / f"{adir.name}.ipynb"
            note = None
            if adir.name not in known:
                nb, note = None, f"{ascii(adir.name)[:120]} is not an assignment of this course."
            elif nb.is_symlink():
                pass  # read_submission says why it is refused
            elif not nb.is_file():
                others = sorted(p for p in adir.glob("*.ipynb")
                                if p.is_file() and not p.is_symlink())
                if len(others) == 1:
                    nb, note = others[0], (f"The notebook was named {wire.clean(others[0].name, 120)} "
                                           f"instead of {adir.name}.ipynb; it was graded anyway.")
                else:
                    nb, note = None, (f"No notebook {adir.name}.ipynb was found"
                                      + (f" (found {len(others)} others)." if others else "."))
            name = adir.name if adir.name in known else wire.clean(adir.name, 120)
            notes = " ".join(n for n in (id_note, note) if n) or None
            found.append(Submission(sid, name, str(nb) if nb is not None else None, notes,
                                    str(adir)))
    return found


def grade_class(submitted, out, jobs=None, limits=None, seed=0, db_url=None, progress=True,
                only=None, resume=False, executor=None, require_fence=(), key_file=None):
    """Grade the submissions in ``submitted`` (those of the students in
    ``only``, if given) into ``out``; return the rows of grades.csv, which
    holds every submission recorded in ``out`` (see ``store``).

    executor: None (a ``pool.LocalPool`` of ``jobs`` processes), or any
    object with its ``run(work, on_result)`` (``cluster.DaskCluster``).
    require_fence: fence layers (``fence.LAYERS``) without which nothing is
    graded (``fence.FenceMissing``); the layers in force are printed first.
    key_file: the course key the hidden inputs are drawn with (``secret.py``;
    default ``out/.grading-key``, made on first use).
    """
    limits = limits or Limits()
    fence.require(require_fence, fence.announce(limits))
    known = set(course.assignments())
    subs = find_submissions(nbgrader_course.submitted_folder(submitted), known)
    if only is not None:
        subs = [s for s in subs if s.student in set(only)]
    jobs = max(1, jobs or os.cpu_count() or 1)
    for aid in known:  # loaded once here
        course.load(aid)
        course.expected(aid)
        nbgrader_course.release(aid)
    out_store = Store(out, db_url, seed)
    grading_key = secret.load_or_create(key_file or Path(out) / secret.KEY_FILE)
    work, keys, kept = [], [], 0
    for sub in subs:
        k = key(sub.path, sub.assignment, seed, limits, grading_key)
        if resume and out_store.recorded(sub.student, sub.assignment, k):
            kept += 1
            continue
        work.append(Job(sub, limits, seed, key=grading_key))
        keys.append(k)
    if executor is None:
        from .pool import LocalPool
        executor = LocalPool(jobs, limit=wall_limit(limits))
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(work), unit="nb", desc="grading", file=sys.stderr)
    seconds, where = {}, {}

    def record(i, graded):
        sub = graded.submission
        seconds[f"{sub.student}/{sub.assignment}"] = graded.seconds
        if graded.worker is not None:
            where[f"{sub.student}/{sub.assignment}"] = graded.worker
        out_store.add(graded, keys[i])
        if bar:
            bar.update()

    settings = {"seed": seed, "jobs": getattr(executor, "jobs", None), "graded": len(work),
                "kept from an earlier run": kept, "limits": dataclasses.asdict(limits),
                "seconds": seconds}
    if getattr(executor, "facts", None) is not None:
        settings.update(cluster=executor.facts, workers=where)
    try:
        with ScratchRoot():
            executor.run(work, on_result=record)
    except Exception as exc:  # the run stopped: OUT still agrees with what was recorded
        out_store.finish(dict(settings, graded=len(seconds), stopped=str(exc)))
        raise
    finally:
        if bar:
            bar.close()
    return out_store.finish(settings)
