"""How fast the grader grades a class, against running the notebooks with nbclient.

    python benchmarks/bench_grading.py [--students 40] [--jobs 1 2] [--nbclient-limit N]

Builds a synthetic class in a temporary folder: every student submits every
assignment of the course, a third each full (the reference solutions),
buggy (one of ``autograder.demo.BUGS``, or a stub where an assignment has
none listed) and stubs (the untouched learner notebook).  It grades the
class through the real command line with each ``--jobs`` value (default 1
and the number of cores) and executes the same notebooks one after another
with nbclient (``NotebookClient(nb, allow_errors=True).execute()``, every
cell, a fresh kernel each: what nbgrader's autograde does per notebook).
Prints notebooks per second and the ratio to nbclient.  No asserts: numbers.
"""
import argparse
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

from autograder import course, demo, notebooks  # noqa: E402


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


def grade(submitted, out, jobs, timeout):
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(submitted),
                           "--out", str(out), "--jobs", str(jobs), "--timeout", str(timeout),
                           "--quiet"], cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - t
    if proc.returncode != 0:
        sys.exit(f"grading failed:\n{proc.stderr}")
    return seconds


def nbclient_serial(paths, timeout):
    from nbclient import NotebookClient
    t = time.monotonic()
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(p.parent)}}).execute(
            stderr=subprocess.DEVNULL)  # the kernel's start-up warnings
    return time.monotonic() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=40)
    ap.add_argument("--jobs", type=int, nargs="*", default=None,
                    help="--jobs values to time (default: 1 and the number of cores)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per cell")
    ap.add_argument("--nbclient-limit", type=int, default=None,
                    help="execute only this many notebooks with nbclient and scale up")
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
        # A fixed random sample: every assignment and kind, not just the first ones.
        sample = (random.Random(0).sample(paths, min(n, args.nbclient_limit))
                  if args.nbclient_limit else paths)
        s = nbclient_serial(sample, args.timeout) * n / len(sample)
        scaled = "" if len(sample) == n else f" (scaled from {len(sample)} notebooks)"
        print(f"nbclient, one after another: {s:7.1f} s  {n / s:6.2f} notebooks/s{scaled}")
        for jobs, g in grading.items():
            print(f"grade --jobs {jobs} takes {g / s:.2f} x the time of nbclient "
                  f"({s / g:.1f} x faster)")


if __name__ == "__main__":
    main()
