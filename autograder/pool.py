"""Grading on this machine: a pool of processes (``grade --jobs N``).

An executor: ``LocalPool(jobs).run(work, on_result)`` grades the
``model.Job``s of ``work`` with ``jobs.grade_job`` and calls
``on_result(index, graded)`` as each ``model.Graded`` arrives (the Dask
executor, ``cluster.DaskCluster``, has the same contract).

Each pool process is a subreaper that cleans up after every sandbox it ran.
At most ``jobs`` submissions are in flight at a time, so when a pool process
dies (the kernel's OOM killer, a bug of ours; a student can no longer signal
it) the suspects are known: every submission in flight is graded again alone
in a fresh pool, and one that brings down even that gets a ``crashed``
result, while the rest of the class goes on in a new pool.  A grading that
outlasts ``limit`` wall-clock seconds is treated the same way.

The processes are started with an explicit start method (``START_METHOD``:
``forkserver``, the default of Python 3.14 on Linux; ``AUTOGRADER_START_METHOD``
chooses another), so nothing depends on what a parent process had loaded:
each process loads the course itself, once.
"""
import multiprocessing
import os
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from . import jobs as jobs_, model
from .processes import SCRATCH_ENV, become_subreaper, reap_orphans

START_METHOD = os.environ.get("AUTOGRADER_START_METHOD", "forkserver")


def _start(scratch):
    """A pool process's first act: adopt orphans, and put scratch folders
    in the run's folder (not inherited under forkserver or spawn)."""
    become_subreaper()
    if scratch:
        os.environ[SCRATCH_ENV] = scratch


def _run(grade, text):
    """In a pool process: the job (JSON text) graded, as JSON text: the one
    serialisation of ``model``, never a pickle of what grading found."""
    return model.dumps(grade(model.loads(model.Job, text)))


def _kill_pool(pool):
    for p in list(getattr(pool, "_processes", {}).values()):
        try:
            p.kill()
        except Exception:
            pass
    pool.shutdown(wait=True, cancel_futures=True)


class LocalPool:
    """Grade jobs in ``jobs`` processes of this machine (see the module docstring).

    grade: the function a pool process runs for a job (``jobs.grade_job``;
    tests hand in one that misbehaves).
    """

    def __init__(self, jobs, limit=None, grade=jobs_.grade_job):
        self.jobs, self.limit, self.grade = max(1, jobs), limit, grade
        self.context = multiprocessing.get_context(START_METHOD)

    def _pool(self, workers):
        return ProcessPoolExecutor(max_workers=workers, mp_context=self.context,
                                   initializer=_start,
                                   initargs=(os.environ.get(SCRATCH_ENV),))

    def _solo(self, job):
        """Grade one suspect alone: if it breaks this pool too, it is the culprit."""
        limit = self.limit or 3600.0
        pool = self._pool(1)
        try:
            fut = pool.submit(_run, self.grade, model.dumps(job))
            done, _ = wait([fut], timeout=limit)
            if not done:
                return jobs_.crashed(job, jobs_.did_not_finish(limit))
            try:
                return model.loads(model.Graded, fut.result())
            except BrokenProcessPool:
                return jobs_.crashed(job, jobs_.STOPPED_THE_GRADER)
        finally:
            _kill_pool(pool)
            reap_orphans()

    def run(self, work, on_result=None):
        """Grade ``work`` [model.Job]; returns the ``model.Graded`` in its order."""
        results = {}

        def done(i, graded):
            results[i] = graded
            if on_result:
                on_result(i, graded)

        pending = deque(enumerate(work))
        pool = self._pool(self.jobs)
        inflight = {}  # future -> (index, job, start time)
        try:
            while pending or inflight:
                broken = False
                while pending and len(inflight) < self.jobs:
                    try:
                        fut = pool.submit(_run, self.grade, model.dumps(pending[0][1]))
                    except BrokenProcessPool:  # a process died since the last look
                        broken = True
                        break
                    i, job = pending.popleft()
                    inflight[fut] = (i, job, time.monotonic())
                finished, _ = wait(list(inflight), timeout=1.0, return_when=FIRST_COMPLETED)
                for f in finished:
                    i, job, _ = inflight[f]
                    try:
                        graded = model.loads(model.Graded, f.result())
                    except BrokenProcessPool:
                        broken = True
                        continue
                    except Exception as exc:  # could not even send the result back
                        graded = jobs_.crashed(job, jobs_.failed(exc))
                    del inflight[f]
                    done(i, graded)
                if self.limit and any(time.monotonic() - t0 > self.limit
                                      for _, _, t0 in inflight.values()):
                    broken = True
                if broken:
                    suspects = sorted(inflight.values(), key=lambda v: v[0])
                    inflight.clear()
                    _kill_pool(pool)
                    reap_orphans()
                    for i, job, _ in suspects:
                        done(i, self._solo(job))
                    pool = self._pool(self.jobs)
        finally:
            _kill_pool(pool)
            reap_orphans()  # interrupted (Ctrl-C): no sandbox outlives the grader
        return [results[i] for i in range(len(work))]
