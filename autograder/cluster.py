"""Grading a class on a Dask cluster (``grade --cluster``).

``--cluster local:N`` starts a ``LocalCluster`` of N worker processes on this
machine; ``--cluster tcp://host:8786`` uses a scheduler started elsewhere
(the README says how).  Each submission is one task; a worker grades it with
the same ``classroom._grade_one`` as a process of the local pool, inside the
same fenced sandboxes, and sends back plain data: the result tuple as JSON
text.  What goes out is plain too: the notebook's bytes (read here, where the
file lies: a worker need not see the submissions folder), the limits, the
seed and the course key (``secret.py``: the cluster's workers are trusted with it).

This process is the coordinator and the one writer: ``run_cluster`` has the
contract of ``classroom.run_pool`` (``on_result(index, result)`` as each
result arrives, through ``distributed.as_completed``), so the ``Store``,
``--resume`` and the progress bar are the same.

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
import functools
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from collections import deque

from . import classroom, course, grade
from .gradescope import FOLDERS
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


def course_hash(root=None):
    """sha256 of every file (path and bytes) the grader reads: autograder/,
    solutions/, source/ and exercises/ (caches and hidden files left out)."""
    root = root or course.ROOT
    h = hashlib.sha256()
    for folder in FOLDERS:
        for p in sorted((root / folder).rglob("*")):
            rel = p.relative_to(root)
            if p.is_file() and not any(part == "__pycache__" or part.startswith(".")
                                       for part in rel.parts):
                h.update(rel.as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


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
    """A task: grade one submission on this worker.  Returns JSON text:
    {"result": the result tuple, "worker": address}, or {"refused": this
    worker's course hash, "worker": address} when it differs from ``digest``."""
    from distributed import get_worker
    address = get_worker().address
    own = _own_hash()
    if own != digest:
        return json.dumps({"refused": own, "worker": address})
    _prepare_worker()
    return json.dumps({"result": grade_one(job), "worker": address})


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


def run_cluster(work, spec, grade_one=classroom._grade_one, limit=None, on_result=None,
                placed=None, facts=None):
    """Grade ``work`` on the Dask cluster ``spec``; the contract of
    ``classroom.run_pool``.  ``placed[index]`` gets the address of the worker
    that graded it; ``facts`` gets the scheduler's and the workers' facts."""
    if not work:
        return []
    distributed = _distributed()
    digest = course_hash()
    results = {}
    with contextlib.ExitStack() as stack:
        if spec.startswith(LOCAL):  # the workers inherit it; removed however they end
            stack.enter_context(ScratchRoot())
        client, cluster = connect(spec)
        stack.callback(_close, client, cluster)
        found = check_workers(client, digest)
        failures = _allowed_failures(client)
        if failures not in (None, ALLOWED_FAILURES):
            print(f"note: the scheduler runs a task again after up to {failures} worker deaths "
                  f"(allowed-failures); start it with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_"
                  f"FAILURES={ALLOWED_FAILURES} so a submission that kills two workers gets "
                  "its crashed row", file=sys.stderr)
        weak = sorted(a for a, f in found.items() if not f["root"])
        if weak:
            print(f"note: {len(weak)} workers do not run as root: their sandboxes have no uid "
                  "or namespaces of their own (results.json says so for each submission)",
                  file=sys.stderr)
        if facts is not None:
            facts.update({"cluster": spec, "scheduler": client.scheduler.address,
                          "allowed_failures": failures, "workers": sorted(found)})
        _Run(client, distributed, work, digest, grade_one, limit, results, on_result,
             placed).go()
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
                 on_result, placed):
        self.client, self.dd = client, distributed
        self.digest, self.grade_one, self.limit = digest, grade_one, limit
        self.results, self.on_result, self.placed = results, on_result, placed
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
            student, aid, path, note, *rest = job  # rest: limits, seed, course key
            carried = grade.load_submission(path) if path is not None else None
            f = self.client.submit(grade_task, (student, aid, carried, note, *rest),
                                   self.digest, self.grade_one, pure=False,
                                   key=f"grade-{student}-{aid}-{self.run_id}")
            with self.lock:
                self.inflight[f] = (i, job, time.monotonic())
            self.arrivals.add(f)

    def deliver(self, i, result):
        self.results[i] = result
        if self.on_result:
            self.on_result(i, result)

    def outcome(self, f, job):
        """(result tuple, worker address or None) of a finished future."""
        if f.status == "finished":  # even if it was late: it did finish
            reply = json.loads(f.result())
            if "refused" in reply:
                raise CourseMismatch(
                    f"worker {reply['worker']} runs other course files than this checkout "
                    f"(course hash {reply['refused'][:12]}, here {self.digest[:12]}): check out "
                    "the same revision there and restart it, or stop it; the submissions "
                    "graded so far are recorded (--resume goes on)")
            return tuple(reply["result"]), reply["worker"]
        if f in self.expired:
            return classroom._crashed(job, classroom.did_not_finish(self.limit)), None
        if f.cancelled():
            return classroom._crashed(job, "The grader lost this submission's task; "
                                           "it was scored 0."), None
        exc = f.exception()
        if isinstance(exc, self.dd.KilledWorker):
            return classroom._crashed(job, classroom.STOPPED_THE_GRADER), None
        return classroom._crashed(job, f"The grader failed on this submission: "
                                       f"{type(exc).__name__}: {exc}"), None

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
                result, worker = self.outcome(f, job)
                self.submit()  # the worker gets its next task before the reports are written
                if self.placed is not None:
                    self.placed[i] = worker
                self.deliver(i, result)
        finally:
            self.done_event.set()
            with self.lock:
                left = list(self.inflight)
            if left:
                self.client.cancel(left)
