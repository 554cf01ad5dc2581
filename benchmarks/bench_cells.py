"""How long every visible test cell and every demo cell takes, as a learner runs it.

    python benchmarks/bench_cells.py [ASSIGNMENT ...] [--repeat 3]

Runs each learner notebook, filled with the reference solutions, top to
bottom in a Jupyter kernel (``autograder.learner.run``, demo cells included)
and prints the seconds of every test cell and every demo cell (the best of
``--repeat`` runs, so a busy machine inflates the numbers as little as it
can), the slowest test cell of each notebook, and those over the course's
target of 0.5 s per test cell.  No asserts: numbers.
"""
import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder import course, learner, notebooks  # noqa: E402

TARGET = 0.5  # seconds per visible test cell with the reference


def main():
    p = argparse.ArgumentParser()
    p.add_argument("assignments", nargs="*", default=course.assignments())
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    over = []
    for aid in args.assignments:
        release = nbformat.read(course.EXERCISES / aid / f"{aid}.ipynb", as_version=4)
        nb = notebooks.fill_with_reference(release, aid)
        kinds = {learner.label(c, n): ("test" if c.metadata.get("nbgrader", {}).get("grade")
                                       else "demo" if "demo" in c.metadata.get("tags", [])
                                       else None)
                 for n, c in enumerate(nb.cells)}
        best = {}
        for _ in range(args.repeat):
            for label, seconds in learner.run(nb).seconds:
                if kinds.get(label):
                    best[label] = min(seconds, best.get(label, float("inf")))
        print(f"\n{aid}")
        for label, seconds in best.items():
            print(f"  {kinds[label]:4s}  {label:32s} {seconds:7.3f} s")
        tests = {k: v for k, v in best.items() if kinds[k] == "test"}
        slowest = max(tests, key=tests.get)
        print(f"  slowest test cell: {slowest} {tests[slowest]:.3f} s; "
              f"demo cells in all: {sum(v for k, v in best.items() if kinds[k] == 'demo'):.1f} s")
        over += [(aid, k, v) for k, v in tests.items() if v > TARGET]
    print("\ntest cells over", TARGET, "s:", over or "none")


if __name__ == "__main__":
    main()
