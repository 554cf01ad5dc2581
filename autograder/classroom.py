"""Grading a whole class: find submissions, grade them in parallel, report.

SUBMITTED/<student_id>/<assignment>/<assignment>.ipynb  (nbgrader's layout)
"""
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import course, grade, report
from .sandbox import Limits, become_subreaper


def find_submissions(submitted, known):
    """[(student, assignment, notebook path or None, note)], sorted."""
    found = []
    for sdir in sorted(p for p in Path(submitted).iterdir() if p.is_dir()):
        for adir in sorted(p for p in sdir.iterdir() if p.is_dir()):
            if adir.name.startswith("."):
                continue
            nb = adir / f"{adir.name}.ipynb"
            note = None
            if not nb.is_file():
                others = sorted(adir.glob("*.ipynb"))
                if len(others) == 1:
                    nb, note = others[0], (f"The notebook was named {others[0].name} "
                                           f"instead of {adir.name}.ipynb; it was graded anyway.")
                else:
                    nb, note = None, (f"No notebook {adir.name}.ipynb was found"
                                      + (f" (found {len(others)} others)." if others else "."))
            if adir.name not in known:
                note = f"'{adir.name}' is not an assignment of this course."
                nb = None
            found.append((sdir.name, adir.name, nb, note))
    return found


def _grade_one(job):
    student, aid, path, note, limits, seed = job
    t0 = time.monotonic()
    base = {"score": 0.0, "tests": [], "notes": [note] if note else [], "events": [],
            "cell_errors": [], "seed": seed}
    try:
        a = course.load(aid) if aid in course.assignments() else None
        base["max_score"] = a.max_score if a else 0.0
        if path is None:
            result, status = base, "missing"
        else:
            nb, problem = grade.read_submission(path)
            if nb is None:
                base["notes"].append(problem)
                result, status = base, "unreadable"
            else:
                result = grade.grade_notebook(a, nb, limits, seed)
                result["notes"] = base["notes"] + result["notes"]
                status = "graded"
    except Exception as exc:  # the grader must go on with the next student
        base.setdefault("max_score", 0.0)
        base["notes"].append(f"The grader failed on this submission: {type(exc).__name__}: {exc}")
        result, status = base, "grader-error"
    result["seconds"] = round(time.monotonic() - t0, 3)
    return student, aid, status, result


def grade_class(submitted, out, jobs=None, limits=None, seed=0, db_url=None, progress=True):
    """Grade every submission; write the reports; return the grades.csv rows."""
    limits = limits or Limits()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    known = set(course.assignments())
    subs = find_submissions(submitted, known)
    jobs = max(1, jobs or os.cpu_count() or 1)
    work = [(s, a, p, n, limits, seed) for s, a, p, n in subs]
    results = []
    # Even with one job the grading runs in a child: it becomes a subreaper
    # and nothing a submission leaves behind reaches this process.
    with ProcessPoolExecutor(max_workers=jobs, initializer=become_subreaper) as pool:
        it = pool.map(_grade_one, work)
        if progress:
            from tqdm import tqdm
            it = tqdm(it, total=len(work), unit="nb", desc="grading", file=sys.stderr)
        for item in it:
            results.append(item)
    rows, graded = [], []
    for student, aid, status, result in results:
        report.write_submission(out, student, aid, result)
        rows.append({"student_id": student, "assignment": aid, "score": result["score"],
                     "max_score": result["max_score"], "status": status, "seed": seed})
        graded.append((student, aid, result))
    report.write_csv(out, rows)
    assignments = {aid: course.load(aid) for aid in sorted({a for _, a, _, _ in subs} & known)}
    report.record_in_gradebook(db_url or f"sqlite:///{(out / 'gradebook.db').resolve()}",
                               assignments, graded)
    (out / "grading.json").write_text(json.dumps({
        "seed": seed, "jobs": jobs, "submissions": len(rows),
        "limits": vars(limits),
        "seconds": {f"{s}/{a}": r["seconds"] for s, a, _, r in results},
    }, indent=2))
    return rows
