"""How fast the similarity report compares a large class.

    python benchmarks/bench_similarity.py [--students 500] [--assignment dcl_backprop]
                                          [--rings 0] [--scaling] [--jobs N]

Builds a synthetic class of one assignment in _build/bench-similarity/ (in
the repository: nothing outside it is read): each student's answers are the
reference solutions rewritten at random, every local name renamed, the
operands of ``+`` and ``*`` swapped at random, and statements of their own
added at random places (random arithmetic on random names, so that every
student has code no one else has and the index has work to do).  Among
them, 10 pairs where one is a disguised copy of the other (renamed again,
statements added), 10 students who pasted the reference and 20 untouched
notebooks.

Then times ``similarity.run`` on it, all pairs of the class, and prints the
time of each stage, the pairs of students per second (n(n-1)/2 over the
whole run), the peak memory (ru_maxrss), and whether the planted pairs are
the top pairs.  ``--rings R``: R groups of students sharing a common base
(R rings of copies, each just under the idiom limit's size: the worst case
the index allows, a dense block of similar pairs).  ``--scaling``: the run at a quarter, half and all of the
students, each in a fresh process, for how time and memory grow.  No
asserts: numbers.
"""
import argparse
import ast
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder import course, similarity  # noqa: E402

WORK = ROOT / "_build" / "bench-similarity"
COPIES, PASTED, UNTOUCHED = 10, 10, 20


class Rewrite(ast.NodeTransformer):
    """Rename local names, swap operands of + and *, add statements of one's own."""

    def __init__(self, rng, keep, extra=0.3, swap=True):
        self.rng, self.keep, self.extra, self.swap, self.names = rng, keep, extra, swap, {}

    def _name(self, old):
        if old in self.keep:
            return old
        if old not in self.names:
            self.names[old] = "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz")
                                      for _ in range(self.rng.randint(1, 8))) + f"_{len(self.names)}"
        return self.names[old]

    def visit_Name(self, node):
        node.id = self._name(node.id)
        return node

    def visit_arg(self, node):
        return node   # the signature is the contract's

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if self.swap and isinstance(node.op, (ast.Add, ast.Mult)) and self.rng.random() < 0.5:
            node.left, node.right = node.right, node.left
        return node

    def _own(self):
        """A statement no one else wrote: random arithmetic on random names."""
        rng = self.rng
        expr = rng.choice(["0", "1", "x"])
        for _ in range(rng.randint(2, 6)):
            if rng.random() < 0.4:
                attr = rng.choice(["sum", "max", "mean", "copy", "ravel", "min", "std"])
                expr = f"({expr} {rng.choice('+-*/')} {rng.choice('tuw')}.{attr}())"
            else:
                expr = f"({expr} {rng.choice('+-*/%')} {rng.randint(0, 99)})"
        return ast.parse(f"{self._name('own_' + str(rng.randint(0, 3)))} = {expr}").body[0]

    def generic_visit(self, node):
        super().generic_visit(node)
        for fieldname in ("body", "orelse"):
            stmts = getattr(node, fieldname, None)
            if isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt):
                out = []
                for s in stmts:
                    if self.rng.random() < self.extra:
                        out.append(self._own())
                    out.append(s)
                # keep a return last, a docstring first
                setattr(node, fieldname, out)
        return node


def rewrite(source, rng, keep, extra=0.3, swap=True):
    tree = ast.parse(source)
    args = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    tree = Rewrite(rng, keep | args, extra, swap).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def notebook(release, answers):
    nb = nbformat.from_dict(release)
    for cell in nb.cells:
        gid = course.grade_id(cell)
        if gid in answers:
            cell.source = answers[gid]
    return nb


def build_class(aid, n, rings, seed=0):
    """Write the class; return the planted pairs {frozenset(a, b)} and the pasters."""
    rng = random.Random(seed)
    a = course.load(aid)
    reference = {c.grade_id: c.source for c in a.cells if c.kind == "answer"}
    release = nbformat.read(course.EXERCISES / aid / f"{aid}.ipynb", as_version=4)
    import builtins
    keep = set(dir(builtins)) | {"np", "numpy", "math"} | set(a.functions)
    folder = WORK / f"submitted-{n}-{rings}"
    if folder.exists():
        shutil.rmtree(folder)
    names = [f"s{i:04d}" for i in range(n)]
    answers, planted, pasted = {}, set(), set()
    ring_base = [{g: rewrite(s, rng, keep, 0.5) for g, s in reference.items()} for _ in range(rings)]
    ring_size = int(0.9 * similarity.common_limit(n))   # just under the idiom limit
    for i, name in enumerate(names):
        r = i // ring_size
        if r < rings:   # a member of ring r: its base, rewritten lightly
            answers[name] = {g: rewrite(s, rng, keep, 0.05, swap=False)
                             for g, s in ring_base[r].items()}
        else:
            answers[name] = {g: rewrite(s, rng, keep) for g, s in reference.items()}
    free = names[rings * ring_size:]
    rng.shuffle(free)
    for k in range(COPIES):
        original, copy = free[2 * k], free[2 * k + 1]
        # a disguise: every name changed again, a few statements added
        answers[copy] = {g: rewrite(s, rng, keep, 0.1, swap=False)
                         for g, s in answers[original].items()}
        planted.add(frozenset((original, copy)))
    for name in free[2 * COPIES:2 * COPIES + PASTED]:
        answers[name] = dict(reference)
        pasted.add(name)
    for name in free[2 * COPIES + PASTED:2 * COPIES + PASTED + UNTOUCHED]:
        answers[name] = {}
    for name in names:
        path = folder / name / aid / f"{aid}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(notebook(release, answers[name]), path)
    (folder / "planted.json").write_text(json.dumps(
        {"planted": [sorted(p) for p in planted], "pasted": sorted(pasted)}))
    return folder, planted, pasted


def load_class(aid, n, rings):
    """The class ``build_class`` wrote, if it is there."""
    folder = WORK / f"submitted-{n}-{rings}"
    data = json.loads((folder / "planted.json").read_text())
    return folder, {frozenset(p) for p in data["planted"]}, set(data["pasted"])


def peak_mb(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024


def measure(aid, n, rings, jobs, reuse=False):
    t0 = time.perf_counter()
    folder, planted, pasted = (load_class if reuse else build_class)(aid, n, rings)
    t_build = time.perf_counter() - t0
    base_mb = peak_mb()

    stages = {}
    wrapped = {}
    for name in ("material", "collect", "class_pairs", "pair_view", "html_text"):
        original = getattr(similarity, name)
        wrapped[name] = original

        def timed(*args, _f=original, _n=name, **kwargs):
            t = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                stages[_n] = stages.get(_n, 0.0) + time.perf_counter() - t
        setattr(similarity, name, timed)
    t0 = time.perf_counter()
    try:
        r = similarity.run(folder, WORK / f"out-{n}-{rings}", [aid], jobs=jobs)[0]
    finally:
        for name, f in wrapped.items():
            setattr(similarity, name, f)
    total = time.perf_counter() - t0
    pairs = n * (n - 1) // 2
    top = {frozenset((p.a, p.b)) for p in r.pairs[:len(planted)]}
    print(f"{aid}: {n} students ({rings} rings of {int(0.9 * similarity.common_limit(n))}), "
          f"{jobs} jobs, class {'read back' if reuse else 'written'} in {t_build:.1f} s")
    print(f"  similarity.run: {total:.2f} s for {pairs} pairs = {pairs / total:,.0f} pairs/s")
    for name, t in stages.items():
        print(f"    {name:12s} {t:6.2f} s")
    print(f"  {r.compared} notebooks compared, {r.too_little} with too little, "
          f"{len(r.pairs)} pairs listed (score >= {similarity.LIST_FLOOR}) and {r.below} under it, "
          f"{len(r.flagged)} flagged, "
          f"{r.common} idioms left out")
    print(f"  planted copies among the top {len(planted)} pairs: {len(top & planted)} of "
          f"{len(planted)}; pasted references flagged: "
          f"{len({p.a for p in r.reference_flagged} & pasted)} of {len(pasted)}")
    others = [p.score for p in r.pairs if frozenset((p.a, p.b)) not in planted]
    scores = sorted(p.score for p in r.pairs if frozenset((p.a, p.b)) in planted)
    print(f"  planted pairs' scores {scores[0]:.2f} to {scores[-1]:.2f}; "
          f"highest other pair {max(others, default=0):.2f}")
    print(f"  peak memory {peak_mb():.0f} MB (before the run: {base_mb:.0f} MB; "
          f"largest child process {peak_mb(resource.RUSAGE_CHILDREN):.0f} MB)")
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--students", type=int, default=500)
    p.add_argument("--assignment", default="dcl_backprop")
    p.add_argument("--rings", type=int, default=0)
    p.add_argument("--scaling", action="store_true")
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--reuse", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.scaling:   # each class written by one process, compared in a fresh one
        for n in (args.students // 4, args.students // 2, args.students):
            common = [sys.executable, __file__, "--students", str(n), "--assignment",
                      args.assignment, "--rings", str(args.rings), "--jobs", str(args.jobs)]
            subprocess.run(common + ["--build-only"], check=True)
            subprocess.run(common + ["--reuse"], check=True)
        return
    if args.build_only:
        build_class(args.assignment, args.students, args.rings)
        return
    measure(args.assignment, args.students, args.rings, args.jobs, args.reuse)


if __name__ == "__main__":
    main()
