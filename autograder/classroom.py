"""Grading a whole class: find submissions, grade them in parallel, report.

SUBMITTED/<student_id>/<assignment>/<assignment>.ipynb  (nbgrader's layout), or an
nbgrader course root holding submitted/ (``nbgrader_course.submitted_folder``)

Submissions are graded in a pool of processes (``--jobs``), each of them a
subreaper that cleans up after every sandbox it ran.  At most ``jobs``
submissions are in flight at a time, so when a pool process dies (the
kernel's OOM killer, a bug of ours; a student can no longer signal it) the
suspects are known: every submission in flight is graded again alone in a
fresh pool, and one that brings down even that gets a row with status
``crashed`` and a message, while the rest of the class goes on in a new
pool.  A submission whose grading outlasts a generous wall-clock limit
(``wall_limit``) is treated the same way.  Whatever happens, every
submission found gets a row, and a report that cannot be written costs that
student's row its files, never the class.

Student ids are folder names, and they end up in file names, spreadsheets
and the gradebook, so they are checked when submissions are found
(``student_id``): letters, digits and ``_ . @ + -``, not starting with a
character a spreadsheet reads as a formula, valid Unicode, not the name of a
grading output.  A folder that fails is still graded, under a safe id
(``invalid-<hash>``), and its row says why.
"""
import hashlib
import os
import re
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from . import course, fence, grade, nbgrader_course, secret, wire
from .processes import ScratchRoot, become_subreaper, reap_orphans
from .sandbox import Limits
from .store import Store, key

# Names of OUT's own files and folders (compared in lower case), and prefixes
# of names a tool may add next to them (gradebook.db-journal, say).
RESERVED = {"grades.csv", "grades-wide.csv", "grading.json", "class-report.html",
            "autograded", "feedback", "submitted", "source", "release", "downloaded",
            "nbgrader_config.py"}
RESERVED_PREFIXES = ("gradebook", "grades", "grading", "class-report")
ID_PATTERN = re.compile(r"\w[\w.@+-]{0,99}")


def wall_limit(limits):
    """Wall-clock seconds after which a grading is abandoned: both passes at
    their time limits, on a machine several times slower than an idle one."""
    return 4 * 2 * limits.notebook_timeout + 120.0


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
    """[(student, assignment, notebook path or None, note, folder)], sorted."""
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
            found.append((sid, name, nb, notes, adir))
    return found


def _grade_one(job):
    student, aid, path, note, limits, seed, *key = job  # key: the course key (secret.py)
    t0 = time.monotonic()
    base = grade.zero_result(0.0, [note] if note else [], seed)
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
                result = grade.grade_notebook(a, nb, limits, seed, key[0] if key else None)
                result["notes"] = base["notes"] + result["notes"]
                status = "graded"
                try:  # made here, where the submission is parsed: the Store writes it
                    result["autograded"] = nbgrader_course.autograded_notebook(a, nb, result)
                except Exception:  # the Store then shows the release notebook instead
                    pass
    except Exception as exc:  # the grader must go on with the next student
        base["notes"].append(f"The grader failed on this submission: {type(exc).__name__}: {exc}")
        result, status = base, "grader-error"
    result["seconds"] = round(time.monotonic() - t0, 3)
    return student, aid, status, result


def _crashed(job, why):
    student, aid, _, note, _, seed, *_ = job
    try:
        max_score = course.load(aid).max_score
    except Exception:
        max_score = 0.0
    result = grade.zero_result(max_score, ([note] if note else []) + [why], seed)
    return student, aid, "crashed", dict(result, seconds=0.0)


def _kill_pool(pool):
    for p in list(getattr(pool, "_processes", {}).values()):
        try:
            p.kill()
        except Exception:
            pass
    pool.shutdown(wait=True, cancel_futures=True)


STOPPED_THE_GRADER = ("Grading this submission stopped the grader's own process; "
                      "it was scored 0. The instructor can see why in the logs.")


def did_not_finish(limit):
    return f"Grading this submission did not finish in {limit:g} s; it was stopped and scored 0."


def _solo(job, grade_one, limit):
    """Grade one suspect alone: if it breaks this pool too, it is the culprit."""
    pool = ProcessPoolExecutor(max_workers=1, initializer=become_subreaper)
    try:
        fut = pool.submit(grade_one, job)
        done, _ = wait([fut], timeout=limit)
        if not done:
            return _crashed(job, did_not_finish(limit))
        try:
            return fut.result()
        except BrokenProcessPool:
            return _crashed(job, STOPPED_THE_GRADER)
    finally:
        _kill_pool(pool)
        reap_orphans()


def run_pool(work, jobs, grade_one=_grade_one, limit=None, on_result=None):
    """Grade ``work`` with at most ``jobs`` in flight.

    on_result(index, result) is called as each result arrives (the one
    writer of the reports); returns the results in the order of ``work``.
    """
    results = {}

    def done(i, result):
        results[i] = result
        if on_result:
            on_result(i, result)

    pending = deque(enumerate(work))
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=become_subreaper)
    inflight = {}  # future -> (index, job, start time)
    try:
        while pending or inflight:
            broken = False
            while pending and len(inflight) < jobs:
                try:
                    fut = pool.submit(grade_one, pending[0][1])
                except BrokenProcessPool:  # a process died since the last look
                    broken = True
                    break
                i, job = pending.popleft()
                inflight[fut] = (i, job, time.monotonic())
            finished, _ = wait(list(inflight), timeout=1.0, return_when=FIRST_COMPLETED)
            for f in finished:
                i, job, _ = inflight[f]
                try:
                    result = f.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                except Exception as exc:  # could not even send the result back
                    result = _crashed(job, f"The grader failed on this submission: "
                                           f"{type(exc).__name__}: {exc}")
                del inflight[f]
                done(i, result)
            if limit and any(time.monotonic() - t0 > limit for _, _, t0 in inflight.values()):
                broken = True
            if broken:
                suspects = sorted(inflight.values(), key=lambda v: v[0])
                inflight.clear()
                _kill_pool(pool)
                reap_orphans()
                for i, job, _ in suspects:
                    done(i, _solo(job, grade_one, limit or 3600.0))
                pool = ProcessPoolExecutor(max_workers=jobs, initializer=become_subreaper)
    finally:
        _kill_pool(pool)
        reap_orphans()  # interrupted (Ctrl-C): no sandbox outlives the grader
    return [results[i] for i in range(len(work))]


def grade_class(submitted, out, jobs=None, limits=None, seed=0, db_url=None, progress=True,
                grade_one=_grade_one, only=None, resume=False, cluster=None, require_fence=(),
                key_file=None):
    """Grade the submissions in ``submitted`` (those of the students in
    ``only``, if given) into ``out``; return the rows of grades.csv, which
    holds every submission recorded in ``out`` (see ``store``).

    cluster: None (a pool of ``jobs`` processes here), or a Dask cluster,
    "local:N" or a scheduler's address (``cluster.run_cluster``).
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
        subs = [s for s in subs if s[0] in set(only)]
    jobs = max(1, jobs or os.cpu_count() or 1)
    for aid in known:  # loaded once here, inherited by every grading process
        course.load(aid)
        course.expected(aid)
        nbgrader_course.release(aid)
    out_store = Store(out, db_url, seed)
    grading_key = secret.load_or_create(key_file or Path(out) / secret.KEY_FILE)
    work, keys, folders, kept = [], [], [], 0
    for s, a, p, n, f in subs:
        k = key(p, a, seed, limits)
        if resume and out_store.recorded(s, a, k):
            kept += 1
            continue
        work.append((s, a, p, n, limits, seed, grading_key))
        keys.append(k)
        folders.append(f)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(work), unit="nb", desc="grading", file=sys.stderr)
    seconds, placed, where, facts = {}, {}, {}, {}

    def record(i, result):
        student, aid, status, res = result
        seconds[f"{student}/{aid}"] = res.get("seconds")
        out_store.add(student, aid, status, res, keys[i], folders[i], work[i][2])
        if cluster:
            where[f"{student}/{aid}"] = placed.get(i)
        if bar:
            bar.update()

    settings = {"seed": seed, "jobs": None if cluster else jobs, "graded": len(work),
                "kept from an earlier run": kept, "limits": vars(limits), "seconds": seconds}
    if cluster:
        settings.update(cluster=facts, workers=where)
        facts["cluster"] = cluster
    try:
        if cluster:
            from .cluster import run_cluster  # Dask: only when a cluster is asked for
            run_cluster(work, cluster, grade_one, limit=wall_limit(limits), on_result=record,
                        placed=placed, facts=facts)
        else:
            with ScratchRoot():
                run_pool(work, jobs, grade_one, limit=wall_limit(limits), on_result=record)
    except Exception as exc:  # the run stopped: OUT still agrees with what was recorded
        out_store.finish(dict(settings, graded=len(seconds), stopped=str(exc)))
        raise
    finally:
        if bar:
            bar.close()
    return out_store.finish(settings)
