"""Grading on a Dask cluster: the same files as the local pool, byte for byte;
a worker killed mid-task costs a retry; a submission that kills two workers
gets a crashed row alone; workers with other course files are refused; Dask
stays optional.  Small classes (a handful of notebooks), generous limits:
the machine may be busy."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import distributed  # noqa: F401  (the course's tests need it; grading does not)
import nbformat
import pytest

from autograder import classroom, cluster, course, demo, jobs, model
from autograder.cluster import DaskCluster
from autograder.model import Limits
from tests.conftest import ROOT, filled, records, release, returned
from tests.test_hostile import (AID, assert_the_hanger_is_abandoned, fence, hanging_grade_one,
                                run_cli)

TIMEOUT = 20  # --timeout per cell: far above what these notebooks take
COMPARED = ("grades.csv", "grades-wide.csv", "class-report.html")
STUDENTS = ("ada", "brook", "cato", "crasher", "dara", "victim")


def dying_grade_one(job):
    """Grades like the grader, except: the worker that grades 'crasher' dies
    at once, every time; the first worker that grades 'victim' is killed
    (SIGKILL, as the OOM killer would) in the middle of it."""
    student = job.submission.student
    if student == "crasher":
        os._exit(9)
    if student == "victim":
        mark = Path(os.environ["AUTOGRADER_TEST_KILLED"])
        if not mark.exists():
            mark.write_text(str(os.getpid()))
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGKILL)).start()
            jobs.grade_job(job)
            time.sleep(600)  # the kill comes first, with a sandbox likely alive
    return jobs.grade_job(job)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A small class, graded once by the local pool (--jobs 2)."""
    base = tmp_path_factory.mktemp("cluster")
    sub = base / "submitted"
    nbs = {"ada": filled(AID), "brook": demo._introduce(filled(AID), demo.BUGS[AID][:1]),
           "cato": release(AID), "crasher": filled(AID), "victim": filled(AID)}
    for name, nb in nbs.items():
        (sub / name / AID).mkdir(parents=True)
        nbformat.write(nb, sub / name / AID / f"{AID}.ipynb")
    (sub / "dara" / AID).mkdir(parents=True)
    (sub / "dara" / AID / f"{AID}.ipynb").write_text("{not json")
    out = base / "jobs"
    proc = run_cli(ROOT, "grade", sub, "--out", out, "--jobs", 2, "--timeout", TIMEOUT, "--quiet",
                   "--key-file", base / "course.key")  # one course key for every OUT here
    assert proc.returncode == 0, proc.stderr
    return sub, out, base


def outputs(out):
    """{relative path: bytes} of the files that must not depend on where grading ran:
    the class's spreadsheets and report, the records, every file of the students'
    folders, and the autograded notebooks the formgrader shows."""
    files = [out / name for name in COMPARED]
    files += sorted(out.glob("records/*/*.json")) + sorted(out.glob("return/*/*/*"))
    files += sorted(out.glob("autograded/*/*/*.ipynb"))
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def student_of(path):
    """The student a path of ``outputs`` belongs to (None: the class's files)."""
    parts = Path(path).parts
    return parts[1] if parts[0] in ("records", "return", "autograded") else None


def gradebook(out):
    """Every submission in the gradebook: scores and each grade, through nbgrader's API."""
    from nbgrader.api import Gradebook, MissingEntry
    found = {}
    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        for a in gb.assignments:
            for s in gb.students:
                try:
                    nb = gb.find_submission_notebook(a.name, a.name, s.id)
                except MissingEntry:
                    continue
                found[(a.name, s.id)] = (nb.score, nb.max_score, sorted(
                    (g.name, g.auto_score, g.manual_score, g.extra_credit, g.max_score)
                    for g in nb.grades))
    return found


def test_a_local_cluster_writes_the_same_files_as_the_local_pool(graded):
    sub, pooled, base = graded
    out = base / "cluster"
    proc = run_cli(ROOT, "grade", sub, "--out", out, "--cluster", "local:2",
                   "--timeout", TIMEOUT, "--quiet", "--key-file", base / "course.key")
    assert proc.returncode == 0, proc.stderr
    want, got = outputs(pooled), outputs(out)
    # a record, three returned files and an autograded notebook each
    assert len(want) == len(COMPARED) + 5 * len(STUDENTS)
    assert got.keys() == want.keys()
    assert [p for p in want if got[p] != want[p]] == []
    book = gradebook(out)
    assert len(book) == len(STUDENTS)  # dara's unreadable file too: zeros
    assert book == gradebook(pooled)
    settings = json.loads((out / "grading.json").read_text())
    assert settings["graded"] == len(STUDENTS)
    assert settings["cluster"]["allowed_failures"] == cluster.ALLOWED_FAILURES
    assert len(settings["cluster"]["workers"]) == 2
    where = settings["workers"]
    assert set(where) == {f"{s}/{AID}" for s in STUDENTS}
    assert set(where.values()) <= set(settings["cluster"]["workers"])
    here = fence()
    for s in set(STUDENTS) - {"dara"}:  # the fence on the worker: as strong as here
        sandbox = json.loads((returned(out, s, AID) / "results.json").read_text())[
            "extra_data"]["sandbox"]
        assert sandbox["isolation"] == here["isolation"]
        assert sandbox["landlock_abi"] == here["landlock"]
        assert sandbox["private_tmpfs"] == here["tmpfs"] and sandbox["seccomp"] == here["seccomp"]

    # --resume on a cluster: nothing is graded again, nothing changes
    proc = run_cli(ROOT, "grade", sub, "--out", out, "--cluster", "local:2",
                   "--timeout", TIMEOUT, "--quiet", "--resume", "--key-file", base / "course.key")
    assert proc.returncode == 0, proc.stderr
    settings = json.loads((out / "grading.json").read_text())
    assert settings["graded"] == 0 and settings["kept from an earlier run"] == len(STUDENTS)
    assert outputs(out) == want


def test_a_killed_worker_costs_a_retry_and_a_worker_killer_its_own_row(graded, tmp_path,
                                                                         monkeypatch):
    sub, graded_by_pool, base = graded
    monkeypatch.setenv("AUTOGRADER_TEST_KILLED", str(tmp_path / "killed"))
    out = tmp_path / "out"
    limits = Limits(cell_timeout=TIMEOUT)
    rows = classroom.grade_class(sub, out, limits=limits, progress=False,
                                 executor=DaskCluster("local:2", limit=jobs.wall_limit(limits),
                                                      grade=dying_grade_one),
                                 key_file=base / "course.key")  # the pool's course key
    assert (tmp_path / "killed").exists()  # the victim's first worker was killed mid-task
    by = {r.student_id: r for r in rows}
    assert set(by) == set(STUDENTS)
    assert by["crasher"].status == "crashed" and by["crasher"].score == 0.0
    assert "stopped the grader's own process" in by["crasher"].message
    assert (returned(out, "crasher", AID) / "feedback.html").exists()
    crashed = records(out)[("crasher", AID)].result
    assert crashed.status is model.Status.CRASHED and crashed.notes[-1] == jobs.STOPPED_THE_GRADER
    want, got = outputs(graded_by_pool), outputs(out)
    others = [p for p in want if student_of(p) not in (None, "crasher")]
    assert len(others) == 5 * (len(STUDENTS) - 1)
    assert [p for p in others if got.get(p) != want[p]] == []
    assert by["victim"].status == "graded"
    assert by["victim"].score == course.load(AID).max_score


def test_a_grading_that_never_ends_on_a_cluster_is_abandoned(tmp_path):
    assert_the_hanger_is_abandoned(DaskCluster("local:2", limit=20.0, grade=hanging_grade_one),
                                   tmp_path, Limits(cell_timeout=TIMEOUT), 20.0)


def test_workers_with_other_course_files_are_refused(graded, tmp_path, monkeypatch):
    sub, _, _ = graded
    client, local = cluster.connect("local:1")
    try:
        with pytest.raises(cluster.CourseMismatch, match="1 of 1 workers"):
            cluster.check_workers(client, "0" * 64)
        assert cluster.check_workers(client, cluster.course_hash())  # the same checkout
        job = model.dumps(model.Job(model.Submission("ada", AID), Limits(cell_timeout=TIMEOUT),
                                    0, notebook=b"{}"))
        reply = json.loads(client.submit(cluster.grade_task, job, "0" * 64,
                                         jobs.grade_job).result())
        assert reply["refused"] == cluster.course_hash() and "graded" not in reply
        reply = json.loads(client.submit(cluster.grade_task, job, cluster.course_hash(),
                                         jobs.grade_job, pure=False).result())
        assert model.loads(model.Graded, reply["graded"]).result.status is \
            model.Status.UNREADABLE  # the same job, on a worker of the same course: graded
    finally:
        client.close()
        local.close()
    # A worker that passed the first check but differs when a task comes (it
    # joined later, or its files changed): the run stops, nothing of its is recorded.
    monkeypatch.setattr(cluster, "course_hash", lambda root=None: "0" * 64)
    monkeypatch.setattr(cluster, "check_workers", lambda client, digest: {})
    out = tmp_path / "out"
    with pytest.raises(cluster.CourseMismatch, match="other course files"):
        classroom.grade_class(sub, out, limits=Limits(cell_timeout=TIMEOUT), progress=False,
                              executor=DaskCluster("local:1"), only=["ada", "brook"])
    assert not list(out.glob("records/*/*.json")) and not list(out.glob("return/*/*/*"))
    assert (out / "grades.csv").read_text().count("\n") == 1  # the header alone


def test_the_course_hash_covers_the_files_the_grader_reads(tmp_path):
    from tests.test_hostile import copy_course
    root = copy_course(tmp_path / "course")
    first = cluster.course_hash(root)
    assert first == cluster.course_hash(ROOT)
    (root / "autograder" / "__pycache__").mkdir(exist_ok=True)
    (root / "autograder" / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert cluster.course_hash(root) == first
    for rel in ("solutions/__init__.py", "source/dcl_backprop/dcl_backprop.md",
                "exercises/dcl_backprop/dcl_backprop.ipynb", "autograder/grade.py"):
        path = root / rel
        saved = path.read_bytes()
        path.write_bytes(saved + b"\n")
        assert cluster.course_hash(root) != first, rel
        path.write_bytes(saved)
    assert cluster.course_hash(root) == first


BLOCK_DASK = ("import sys\n"
              "sys.modules['dask'] = sys.modules['distributed'] = None  # not installed\n"
              "from autograder.__main__ import main\n"
              "sys.exit(main(sys.argv[1:]))\n")


def test_grading_on_one_machine_needs_no_dask(tmp_path):
    sub = tmp_path / "submitted"
    (sub / "cato" / AID).mkdir(parents=True)
    nbformat.write(release(AID), sub / "cato" / AID / f"{AID}.ipynb")
    base = [sys.executable, "-c", BLOCK_DASK, "grade", str(sub), "--timeout", str(TIMEOUT),
            "--quiet"]
    proc = subprocess.run(base + ["--out", str(tmp_path / "a"), "--jobs", "1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (returned(tmp_path / "a", "cato", AID) / "results.json").exists()
    proc = subprocess.run(base + ["--out", str(tmp_path / "b"), "--cluster", "local:2"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 2
    assert "needs Dask" in proc.stderr and "Traceback" not in proc.stderr
