"""Grading a class on a Dask cluster (``grade --cluster``).

``--cluster local:N`` starts a ``LocalCluster`` of N worker processes on this
machine; ``--cluster tcp://host:8786`` uses a scheduler started elsewhere
(the README says how).  Each submission is one task; a worker grades it with
the same ``jobs.grade_job`` as a process of the local pool, inside the same
fenced sandboxes, and sends back the ``model.Graded`` in the one
serialisation of ``model`` (JSON text).  What goes out is the ``model.Job``
in the same form, with the notebook's bytes in it (read here, where the file
lies: a worker need not see the submissions folder) and the course key
(``secret.py``: the cluster's workers are trusted with it).

This process is the coordinator and the one writer: ``DaskCluster`` is an
executor with the contract of ``pool.LocalPool`` (``run(work, on_result)``,
``on_result(index, graded)`` as each result arrives, through
``distributed.as_completed``), so the ``Store``, ``--resume`` and the
progress bar are the same.

At most as many tasks are in flight as the cluster has threads, so a worker
(one thread, as recommended) holds one submission at a time and a worker
that dies takes only that one down with it.  The scheduler then runs it
again on another worker (``allowed-failures`` = 1: one retry); one that
brings down a second worker too gets a ``crashed`` row, like the culprit of
a dead pool process.  A grading that outlasts ``limit`` seconds is
abandoned: its task is cancelled and its worker restarted (by its nanny).

Workers must grade with the coordinator's course: a hash of autograder/,
solutions/, source/ and exercises/ (``course_hash``) is compared on every
worker before the first task, and travels with every task, so a worker
that joins later with other files refuses the task instead of grading it.
Either way the run stops with ``CourseMismatch`` (what was graded until
then is recorded; ``--resume`` goes on from there).

Dask is optional: only this module imports it, and only when a run asks for
a cluster.
"""
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from collections import deque

from . import course, jobs, model
from .processes import SCRATCH_ENV, ScratchRoot, become_subreaper, reap_orphans

LOCAL = "local:"
ALLOWED_FAILURES = 1  # a task is run again once after its worker died, not twice
START_TIMEOUT = 600.0  # seconds to wait for a first worker (a batch queue can be slow)


class ClusterError(RuntimeError):
    """The cluster cannot be used (no Dask, no scheduler, no worker)."""


class CourseMismatch(ClusterError):
    """A worker's course files differ from the coordinator's."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError(
            "grading on a cluster needs Dask: install dask and distributed into the "
            "course's venv (.venv/bin/pip install -r requirements.txt -c constraints.txt), "
            "or grade on this machine with --jobs") from None
    return distributed


course_hash = course.files_hash  # what every worker must have the same of


@functools.lru_cache(maxsize=None)
def _own_hash():
    """This process's course hash, taken once: the code it imported is the
    code it runs, whatever happens to the checkout later."""
    return course_hash()


# ----------------------------------------------------------------------------
# On a worker

_READY = threading.Lock()
_prepared = False


def _prepare_worker():
    """Once per worker process, before its first sandbox: become the subreaper
    of the sandboxes, as a pool process does; kill what a dead predecessor's
    sandboxes left.  The scratch folders go into the grading run's parent
    folder where the worker inherited it (a local cluster: the coordinator
    removes it, however its workers ended), else into one of the worker's own."""
    global _prepared
    with _READY:
        if _prepared:
            return
        become_subreaper()
        reap_orphans()
        if not os.path.isdir(os.environ.get(SCRATCH_ENV, "")):
            import atexit
            root = ScratchRoot().__enter__()
            atexit.register(root.__exit__, None, None, None)
        _prepared = True


def worker_facts():
    """What the coordinator checks on every worker before the first task."""
    return {"hash": _own_hash(), "root": os.geteuid() == 0, "pid": os.getpid()}


def grade_task(job, digest, grade_one):
    """A task: grade one submission (``job``: a ``model.Job`` as ``model.dumps``
    wrote it) on this worker.  Returns JSON text: {"graded": the
    ``model.Graded`` as ``model.dumps`` writes it, "worker": address}, or
    {"refused": this worker's course hash, "worker": address} when it
    differs from ``digest``."""
    from distributed import get_worker
    address = get_worker().address
    own = _own_hash()
    if own != digest:
        return json.dumps({"refused": own, "worker": address})
    _prepare_worker()
    graded = grade_one(model.loads(model.Job, job))
    return json.dumps({"graded": model.dumps(graded), "worker": address})


# ----------------------------------------------------------------------------
# The coordinator


def connect(spec):
    """(client, cluster or None) for ``spec``: "local:N" or a scheduler address."""
    distributed = _distributed()
    import logging
    if spec.startswith(LOCAL):
        try:
            n = int(spec[len(LOCAL):])
        except ValueError:
            n = 0
        if n < 1:
            raise ClusterError(f"--cluster {spec}: write local:N with N >= 1 workers")
        # Processes, not threads: each worker must be a subreaper of its own.
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.ERROR,
            scheduler_kwargs={"allowed_failures": ALLOWED_FAILURES})
        try:
            return distributed.Client(cluster), cluster
        except BaseException:
            cluster.close()
            raise
    try:
        client = distributed.Client(spec, timeout=60)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"no Dask scheduler answers at {spec}: {exc}") from None
    return client, None


def _allowed_failures(client):
    try:
        return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    except Exception:
        return None


def check_workers(client, digest, wait=START_TIMEOUT):
    """Facts of every worker ({address: worker_facts()}); raises
    CourseMismatch naming the workers whose course hash is not ``digest``."""
    try:
        client.wait_for_workers(1, timeout=wait)
    except TimeoutError:
        raise ClusterError(f"no worker joined the scheduler within {wait:g} s") from None
    facts = client.run(worker_facts)
    other = sorted(a for a, f in facts.items() if f["hash"] != digest)
    if other:
        raise CourseMismatch(
            f"{len(other)} of {len(facts)} workers run other course files than this "
            f"checkout ({', '.join(other[:10])}{', ...' if len(other) > 10 else ''}): check "
            "out the same revision there (autograder/, solutions/, source/, exercises/) "
            "and restart them, or stop them")
    return facts


class DaskCluster:
    """The executor of a Dask cluster ``spec`` ("local:N" or a scheduler's
    address); the contract of ``pool.LocalPool``.  ``facts`` gets the
    scheduler's and the workers' facts once it ran."""

    def __init__(self, spec, limit=None, grade=jobs.grade_job):
        self.spec, self.limit, self.grade = spec, limit, grade
        self.facts = {"cluster": spec}

    def run(self, work, on_result=None):
        """Grade ``work`` [model.Job]; returns the ``model.Graded`` in its order,
        each with the address of the worker that graded it."""
        if not work:
            return []
        distributed = _distributed()
        digest = course_hash()
        results = {}
        with contextlib.ExitStack() as stack:
            if self.spec.startswith(LOCAL):  # the workers inherit it; removed however they end
                stack.enter_context(ScratchRoot())
            client, cluster = connect(self.spec)
            stack.callback(_close, client, cluster)
            found = check_workers(client, digest)
            failures = _allowed_failures(client)
            if failures not in (None, ALLOWED_FAILURES):
                print(f"note: the scheduler runs a task again after up to {failures} worker "
                      f"deaths (allowed-failures); start it with DASK_DISTRIBUTED__SCHEDULER__"
                      f"ALLOWED_FAILURES={ALLOWED_FAILURES} so a submission that kills two "
                      "workers gets its crashed row", file=sys.stderr)
            weak = sorted(a for a, f in found.items() if not f["root"])
            if weak:
                print(f"note: {len(weak)} workers do not run as root: their sandboxes have no "
                      "uid or namespaces of their own (results.json says so for each "
                      "submission)", file=sys.stderr)
            self.facts.update({"scheduler": client.scheduler.address,
                               "allowed_failures": failures, "workers": sorted(found)})
            _Run(client, distributed, work, digest, self.grade, self.limit, results,
                 on_result).go()
        return [results[i] for i in range(len(work))]


def _close(client, cluster):
    client.close()
    if cluster is not None:
        cluster.close()
        reap_orphans()  # what killed workers of this machine left


class _Run:
    """The loop of ``run_cluster``: keep the cluster's threads busy, one
    submission each, and deliver the results as they arrive."""

    def __init__(self, client, distributed, work, digest, grade_one, limit, results,
                 on_result):
        self.client, self.dd = client, distributed
        self.digest, self.grade_one, self.limit = digest, grade_one, limit
        self.results, self.on_result = results, on_result
        self.pending = deque(enumerate(work))
        self.inflight = {}  # future -> (index, job, time submitted)
        self.expired = set()  # futures abandoned at the wall-clock limit
        self.lock = threading.Lock()
        self.done_event = threading.Event()
        self.run_id = uuid.uuid4().hex[:8]
        self.asked, self.threads = -1e9, 1
        self.arrivals = distributed.as_completed()

    def capacity(self):
        """The cluster's threads (asked of the scheduler at most once a second)."""
        now = time.monotonic()
        if now - self.asked > 1.0:
            self.asked, self.threads = now, max(1, sum(self.client.nthreads().values()))
        return self.threads

    def submit(self):
        capacity = self.capacity()
        while self.pending and len(self.inflight) < capacity:
            i, job = self.pending.popleft()
            sub = job.submission
            f = self.client.submit(grade_task, model.dumps(jobs.carried(job)),
                                   self.digest, self.grade_one, pure=False,
                                   key=f"grade-{sub.student}-{sub.assignment}-{self.run_id}")
            with self.lock:
                self.inflight[f] = (i, job, time.monotonic())
            self.arrivals.add(f)

    def deliver(self, i, result):
        self.results[i] = result
        if self.on_result:
            self.on_result(i, result)

    def outcome(self, f, job):
        """The ``model.Graded`` of a finished future (with its worker's address)."""
        if f.status == "finished":  # even if it was late: it did finish
            reply = json.loads(f.result())
            if "refused" in reply:
                raise CourseMismatch(
                    f"worker {reply['worker']} runs other course files than this checkout "
                    f"(course hash {reply['refused'][:12]}, here {self.digest[:12]}): check out "
                    "the same revision there and restart it, or stop it; the submissions "
                    "graded so far are recorded (--resume goes on)")
            graded = model.loads(model.Graded, reply["graded"])
            return dataclasses.replace(graded, worker=reply["worker"])
        if f in self.expired:
            return jobs.crashed(job, jobs.did_not_finish(self.limit))
        if f.cancelled():
            return jobs.crashed(job, jobs.LOST)
        exc = f.exception()
        if isinstance(exc, self.dd.KilledWorker):
            return jobs.crashed(job, jobs.STOPPED_THE_GRADER)
        return jobs.crashed(job, jobs.failed(exc))

    def watch(self):
        """Abandon gradings older than ``limit``: cancel, restart their worker."""
        while not self.done_event.wait(1.0):
            now = time.monotonic()
            with self.lock:
                late = [f for f, (_, _, t0) in self.inflight.items()
                        if now - t0 > self.limit and f not in self.expired]
            if not late:
                continue
            try:
                busy = self.client.processing()
            except Exception:
                busy = {}
            workers = {w for w, keys in busy.items() for f in late if f.key in keys}
            with self.lock:
                self.expired.update(late)
            self.client.cancel(late)
            if workers:
                try:
                    self.client.restart_workers(sorted(workers), raise_for_error=False)
                except Exception:
                    pass  # a worker without a nanny: its thread stays busy until it ends

    def go(self):
        watcher = None
        if self.limit:
            watcher = threading.Thread(target=self.watch, daemon=True)
            watcher.start()
        try:
            self.submit()
            for f in self.arrivals:  # as each result arrives
                with self.lock:
                    i, job, _ = self.inflight.pop(f)
                graded = self.outcome(f, job)
                self.submit()  # the worker gets its next task before the reports are written
                self.deliver(i, graded)
        finally:
            self.done_event.set()
            with self.lock:
                left = list(self.inflight)
            if left:
                self.client.cancel(left)
