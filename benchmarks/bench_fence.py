"""What the round-three mechanisms cost in grading time.

memory cgroup   a sandbox's start and close with its memory cgroup and
                without (isolation "auto" with the cgroup layer switched
                off), the cgroup's own make-and-remove, and the read of its
                OOM counter that follows every reply;
fence probe     the sandbox that ``fence.announce`` starts once per run;
course key      the HMAC derivations of one submission (sandbox seed, one
                per test cell);
goodness of fit the hidden random_angles check's extra work: the reference's
                sample and the two-sample Kolmogorov-Smirnov test (D = 200);
withholding     ``grade.withhold_unearned`` on a graded dcl_backprop.

Each figure is the median of --repeat runs, in milliseconds.  Numbers only:
nothing is asserted.  Run from the repository root (as root for the full
fence):  python benchmarks/bench_fence.py
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from autograder import cgroup, checks, course, fence, grade, sandbox, secret  # noqa: E402
from autograder.sandbox import Limits, Sandbox  # noqa: E402


def ms(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def start_close(limits):
    with Sandbox(limits):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    n = args.repeat
    limits = Limits(memory_mb=2048)
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, euid {os.geteuid()}")
    info = fence.probe(limits)
    print(fence.describe(info))

    with_cg = ms(lambda: start_close(limits), n)
    create = sandbox.MemoryCgroup.create
    sandbox.MemoryCgroup.create = classmethod(lambda cls, mb, where=None: None)
    try:
        without = ms(lambda: start_close(limits), n)
    finally:
        sandbox.MemoryCgroup.create = create
    print(f"sandbox start + close: {with_cg:.1f} ms with the memory layer "
          f"({info.get('memory')}), {without:.1f} ms without (split budget)")
    if cgroup.parent() is not None:
        print(f"memory cgroup make + remove: "
              f"{ms(lambda: cgroup.MemoryCgroup.create(2048).remove(), n * 10):.3f} ms")
        cg = cgroup.MemoryCgroup.create(2048)
        try:
            print(f"OOM counter read (after every reply): "
                  f"{ms(cg.oom_kills, n * 100) * 1e3:.1f} us")
        finally:
            cg.remove()
    print(f"fence probe at the start of a run: {ms(lambda: fence.probe(limits), n):.1f} ms")

    key = os.urandom(32)
    cells = [c.grade_id for c in course.load("dcl_backprop").tests]
    print(f"course key derivations of one submission ({len(cells)} test cells): "
          f"{ms(lambda: [secret.sandbox_seed(key, 7)] + [secret.hidden_entropy(key, 7, c) for c in cells], n * 100) * 1e3:.1f} us")

    from solutions import dimensionality as ref
    theta = ref.random_angles(200, 20_000, np.random.default_rng(1))
    print(f"random_angles hidden check, extra work at D = 200: reference sample "
          f"{ms(lambda: ref.random_angles(200, 20_000, np.random.default_rng(2)), n):.1f} ms, "
          f"two-sample KS {ms(lambda: checks.ks_two_sample(theta, theta[::-1] + 1e-9), n):.1f} ms")

    a = course.load("dcl_backprop")
    records = {}
    original = grade._records

    def keep(cell, *rest):
        out = original(cell, *rest)
        records.setdefault(cell.grade_id, []).extend(out)
        return out

    grade._records = keep
    try:
        t = time.perf_counter()
        grade.grade_notebook(a, _filled("dcl_backprop"), seed=0, key=key)
        whole = time.perf_counter() - t
    finally:
        grade._records = original
    deps = grade.reference_dependencies(a)
    copy = (lambda: {k: [dict(r) for r in v] for k, v in records.items()})
    print(f"withhold_unearned on dcl_backprop ({sum(map(len, records.values()))} records): "
          f"{ms(lambda: grade.withhold_unearned(copy(), deps), n * 10):.2f} ms "
          f"(the whole grading: {whole:.1f} s)")


def _filled(aid):
    from tests.conftest import filled
    return filled(aid)


if __name__ == "__main__":
    main()
