"""How fast the grader grades a class, against running the notebooks with nbclient.

    python benchmarks/bench_grading.py [--students 40] [--jobs 1 2] [--nbclient-limit N]
                                       [--cluster N]

Builds a synthetic class in a temporary folder: every student submits every
assignment of the course, a third each full (the reference solutions),
buggy (one of ``autograder.demo.BUGS``, or a stub where an assignment has
none listed) and stubs (the untouched learner notebook).  It grades the
class through the real command line with each ``--jobs`` value (default 1
and the number of cores) and executes the same notebooks one after another
with nbclient (``NotebookClient(nb, allow_errors=True).execute()``, every
cell, a fresh kernel each: what nbgrader's autograde does per notebook).
Prints notebooks per second and the ratio to nbclient.  No asserts: numbers.
A cell that outlasts ``--timeout`` under nbclient (a busy machine) makes
that baseline "timed out" instead of a number.

``--cluster N`` also grades the class with ``--cluster local:N`` (a Dask
cluster of N worker processes on this machine: the cost of the cluster path
where a local pool would do), then measures what the cluster path adds per
submission, on a cluster of its own:

- start-up: a LocalCluster of N workers, ready and checked;
- scheduler overhead per task: a burst of tasks that do nothing, all
  submitted at once (the scheduler and the workers' bookkeeping, pipelined);
- round trip per submission: the class again through the grader's own loop
  (``cluster._Run``) with a grade function that hands back the result
  already recorded (OUT/records/), so nothing is graded: what a worker
  waits between two submissions;
- the one writer's time per submission (``Store.add``: the record, the
  gradebook, the autograded notebook, the student's folder), timed in that
  replay.

From these and the measured time of one grading on a worker it estimates
the throughput of 10, 100 and 1000 workers (one core each): each worker
grades one submission per (grading time + round trip), and the coordinator,
which writes every result and hosts the scheduler's work per task, handles
one per (write + scheduler overhead), whichever is less.  An estimate, not a
measurement: no network, no slower file system, one machine's numbers.
"""
import argparse
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder import course, demo, model, notebooks  # noqa: E402
from autograder.model import Limits  # noqa: E402


def build_class(folder, n_students):
    """Write SUBMITTED/<student>/<assignment>/<assignment>.ipynb; returns the paths."""
    paths = []
    for aid in course.assignments():
        target = course.EXERCISES / aid / f"{aid}.ipynb"
        if not target.exists():
            continue
        release = nbformat.read(target, as_version=4)
        full = notebooks.fill_with_reference(release, aid)
        bugs = demo.BUGS.get(aid, [])
        for i in range(n_students):
            kind = i % 3
            if kind == 0:
                nb = full
            elif kind == 1 and bugs:
                nb = demo._introduce(nbformat.from_dict(full), [bugs[i % len(bugs)]])
            else:
                nb = release
            p = Path(folder) / f"s{i:03d}" / aid / f"{aid}.ipynb"
            p.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, p)
            paths.append(p)
    return paths


def grade(submitted, out, jobs, timeout, cluster=None):
    t = time.monotonic()
    where = ["--cluster", cluster] if cluster else ["--jobs", str(jobs)]
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(submitted),
                           "--out", str(out), *where, "--timeout", str(timeout),
                           "--quiet"], cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - t
    if proc.returncode != 0:
        sys.exit(f"grading failed:\n{proc.stderr}")
    return seconds


def nbclient_serial(paths, timeout):
    """Seconds to execute ``paths`` one after another, or None when a cell
    outlasted ``timeout`` (nbclient stops the notebook there: no fair number)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError
    limit = max(1, math.ceil(timeout))  # nbclient counts whole seconds
    t = time.monotonic()
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        try:
            NotebookClient(nb, timeout=limit, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": str(p.parent)}}).execute(
                stderr=subprocess.DEVNULL)  # the kernel's start-up warnings
        except CellTimeoutError:
            print(f"nbclient: a cell of {p.parent.parent.name}/{p.name} ran longer than "
                  f"{limit} s")
            return None
    return time.monotonic() - t


def nothing(x):
    return x


def replay(out, job):
    """A grade function that grades nothing: the result recorded in ``out``."""
    from autograder import model, store
    sub = job.submission
    rec = model.loads(model.Record, store.record_path(out, sub.student, sub.assignment)
                      .read_text(encoding="utf-8"))
    return model.Graded(sub, rec.result)


def cluster_costs(n_workers, submitted, graded_out, scratch, timeout, burst=400):
    """Seconds: (start-up, scheduler overhead per task, round trip per
    submission, the one writer's time per submission)."""
    import functools
    from distributed import as_completed
    from autograder import classroom, cluster
    from autograder.store import Store, key
    t = time.monotonic()
    client, local = cluster.connect(f"local:{n_workers}")
    try:
        cluster.check_workers(client, cluster.course_hash())
        start = time.monotonic() - t
        client.gather(client.map(nothing, range(2 * n_workers), pure=False))  # warm
        t = time.monotonic()
        for _ in as_completed(client.map(nothing, range(burst), pure=False)):
            pass
        per_task = (time.monotonic() - t) / burst
        limits = Limits(cell_timeout=timeout)
        work = [model.Job(s, limits, 0) for s in classroom.find_submissions(
            submitted, set(course.assignments()))]
        import distributed
        results = {}
        run = cluster._Run(client, distributed, work, cluster.course_hash(),
                           functools.partial(replay, str(graded_out)), None, results, None)
        t = time.monotonic()
        run.go()
        # n_workers submissions in flight: each comes back after one round trip
        round_trip = (time.monotonic() - t) * n_workers / len(work)
    finally:
        client.close()
        local.close()
    store = Store(scratch)  # the one writer, on the same results
    t = time.monotonic()
    for i, job in enumerate(work):
        store.add(results[i], key(job.submission.path, job.submission.assignment, 0, limits))
    write = (time.monotonic() - t) / len(work)
    store.finish({})
    return start, per_task, round_trip, write


def estimate(workers, grading, round_trip, serial):
    """Notebooks per second of ``workers`` one-core workers (see the module docstring)."""
    return min(workers / (grading + round_trip), 1.0 / serial)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=40)
    ap.add_argument("--jobs", type=int, nargs="*", default=None,
                    help="--jobs values to time (default: 1 and the number of cores)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per cell")
    ap.add_argument("--nbclient-limit", type=int, default=None,
                    help="execute only this many notebooks with nbclient and scale up")
    ap.add_argument("--cluster", type=int, default=None, metavar="N",
                    help="also grade with --cluster local:N and measure the cluster path")
    args = ap.parse_args()
    jobs_list = args.jobs or sorted({1, os.cpu_count() or 1})
    with tempfile.TemporaryDirectory() as tmp:
        submitted = Path(tmp) / "submitted"
        paths = build_class(submitted, args.students)
        n = len(paths)
        print(f"class: {args.students} students x {n // max(1, args.students)} assignments "
              f"= {n} notebooks ({os.cpu_count()} cores)")
        grading = {}
        for jobs in jobs_list:
            s = grade(submitted, Path(tmp) / f"out-{jobs}", jobs, args.timeout)
            grading[jobs] = s
            print(f"grade --jobs {jobs}: {s:7.1f} s  {n / s:6.2f} notebooks/s  "
                  f"({s / n * 1000:5.0f} ms per notebook, reports and gradebook included)")
        if args.cluster:
            report_cluster(args, submitted, Path(tmp), n, grading)
        # A fixed random sample: every assignment and kind, not just the first ones.
        sample = (random.Random(0).sample(paths, min(n, args.nbclient_limit))
                  if args.nbclient_limit else paths)
        s = nbclient_serial(sample, args.timeout)
        if s is None:
            print(f"nbclient, one after another: timed out (--timeout {args.timeout:g} s per "
                  "cell); no ratio")
            return
        s *= n / len(sample)
        scaled = "" if len(sample) == n else f" (scaled from {len(sample)} notebooks)"
        print(f"nbclient, one after another: {s:7.1f} s  {n / s:6.2f} notebooks/s{scaled}")
        for jobs, g in grading.items():
            print(f"grade --jobs {jobs} takes {g / s:.2f} x the time of nbclient "
                  f"({s / g:.1f} x faster)")


def report_cluster(args, submitted, tmp, n, grading):
    import json
    from statistics import mean
    spec = f"local:{args.cluster}"
    out = tmp / "out-cluster"
    s = grade(submitted, out, None, args.timeout, cluster=spec)
    print(f"grade --cluster {spec}: {s:7.1f} s  {n / s:6.2f} notebooks/s  "
          f"({s / n * 1000:5.0f} ms per notebook, cluster start-up included)")
    if args.cluster in grading:
        print(f"  the cluster path takes {s / grading[args.cluster]:.2f} x the time of "
              f"--jobs {args.cluster} on this machine")
    times = [t for t in json.loads((out / "grading.json").read_text())["seconds"].values() if t]
    graded = mean(times)
    start, per_task, round_trip, write = cluster_costs(args.cluster, submitted, out,
                                                       tmp / "replay", args.timeout)
    serial = write + per_task
    print(f"  start-up of {spec} (workers ready and checked): {start:.1f} s")
    print(f"  grading one notebook on a worker: {graded * 1000:.0f} ms on average "
          f"(grading.json's seconds of the {len(times)} notebooks read)")
    print(f"  scheduler overhead per task (a burst of empty tasks): {per_task * 1000:.2f} ms")
    print(f"  round trip per submission (nothing graded; a worker's wait between two): "
          f"{round_trip * 1000:.0f} ms")
    print(f"  the one writer per submission (record, gradebook, notebooks, student's folder): "
          f"{write * 1000:.1f} ms")
    print("  estimate, one core per worker, this machine's numbers, no network: "
          f"min(W / {graded + round_trip:.3f} s, 1 / {serial * 1000:.1f} ms)")
    for workers in (10, 100, 1000):
        rate = estimate(workers, graded, round_trip, serial)
        bound = "the workers" if rate < 1.0 / serial else "the coordinator (one writer)"
        print(f"    {workers:5d} workers: ~{rate:7.1f} notebooks/s, "
              f"~{3600 * rate:9.0f} per hour (bound by {bound})")


if __name__ == "__main__":
    main()
