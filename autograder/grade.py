"""Grading one submission: run the student's cells fenced, check from outside.

The plan follows the instructor source, not the submission: read-only cells
run as the instructor wrote them, answer cells as the student wrote them
(matched by nbgrader ``grade_id``), cells the student added run where they
stand, and test cells of the submission are ignored.  The test cells of the
source (visible and hidden) then run *here*, in the grader's process, with
each graded function replaced by a ``StudentFunction`` that calls into the
sandbox; scoring data never passes through the student's process.
"""
import json
import time
import zlib

import nbformat
import numpy as np

from . import checks, course
from .sandbox import Limits, Sandbox, StudentCrash, StudentError, StudentFunction

MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_RESTARTS = 3


def read_submission(path):
    """The submitted notebook as nbformat v4, or a message saying why not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"The notebook could not be read ({exc.strerror})."
    if len(data) > MAX_NOTEBOOK_BYTES:
        return None, f"The notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MB."
    if not data.strip():
        return None, "The notebook file is empty."
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    except UnicodeDecodeError:
        return None, "The notebook is not UTF-8 text."
    except Exception as exc:  # nbformat raises many kinds for bad JSON
        return None, f"The notebook is not valid notebook JSON ({type(exc).__name__})."
    if not isinstance(nb.get("cells"), list):
        return None, "The notebook has no list of cells."
    return nb, None


def plan(assignment, nb):
    """The cells to run in the sandbox, as (label, source), and notes."""
    notes = []
    by_id, seen_ids = {}, {}
    order = []  # the submission's cells: ("known", gid) or ("extra", source)
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        gid = meta.get("grade_id") if isinstance(meta, dict) else None
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        if isinstance(gid, str) and gid:
            seen_ids[gid] = seen_ids.get(gid, 0) + 1
            by_id[gid] = src  # the last copy of a duplicated cell wins
            order.append(("known", gid))
        else:
            order.append(("extra", src, i))
    for gid, n in sorted(seen_ids.items()):
        if n > 1:
            notes.append(f"Cell '{gid}' appears {n} times; the last copy was used.")
    source_ids = {c.grade_id for c in assignment.cells if c.grade_id}
    for gid in sorted(set(by_id) - source_ids):
        notes.append(f"Cell '{gid}' is not part of this assignment; it was run as your own cell.")

    extras_after = {None: []}  # extra cells keyed by the known cell before them
    last = None
    for item in order:
        if item[0] == "known" and item[1] in source_ids:
            last = item[1]
            extras_after.setdefault(last, [])
        elif item[0] == "known":
            extras_after.setdefault(last, []).append((f"<cell {item[1]}>", by_id[item[1]]))
        else:
            extras_after.setdefault(last, []).append((f"<cell {item[2] + 1}>", item[1]))

    steps = list(extras_after[None])
    for c in assignment.cells:
        if c.kind in ("setup", "given"):
            steps.append((f"<cell {c.grade_id}>", c.source))
        elif c.kind == "answer":
            if c.grade_id in by_id:
                steps.append((f"<cell {c.grade_id}>", by_id[c.grade_id]))
            else:
                notes.append(f"The answer cell for {', '.join(c.functions)} is missing "
                             "from the notebook.")
        steps.extend(extras_after.get(c.grade_id, []))
    return steps, notes


def run_hidden_aware(source, namespace):
    """Execute a test cell, flagging the checks inside hidden blocks."""
    lines = []
    for line in source.splitlines():
        if line.strip() == "### BEGIN HIDDEN TESTS":
            line = "_checks._hidden = True"
        elif line.strip() == "### END HIDDEN TESTS":
            line = "_checks._hidden = False"
        lines.append(line)
    checks._hidden = False
    try:
        exec(compile("\n".join(lines), "<test cell>", "exec"), namespace)
    finally:
        checks._hidden = False


class Session:
    """The student's process for one submission, restarted if it dies."""

    def __init__(self, steps, limits, seed):
        self.steps, self.limits, self.seed = steps, limits, seed
        self.sandbox = None
        self.restarts = 0
        self.cell_errors = []
        self.events = []
        self.deadline = time.monotonic() + limits.notebook_timeout
        self.landlock = 0

    def _start(self, first):
        """Start the process and run the plan; a cell that kills the process
        is reported and skipped, and the plan runs again without it."""
        skip = set()
        while True:
            sb = Sandbox(self.limits, self.seed).start()
            self.landlock = sb.landlock
            crashed = None
            for n, (label, src) in enumerate(self.steps):
                if n in skip:
                    continue
                left = self.deadline - time.monotonic()
                if left <= 0:
                    if first:
                        self.events.append("The notebook's time limit "
                                           f"({self.limits.notebook_timeout:g} s) was reached.")
                    break
                try:
                    sb.exec(src, label, timeout=min(self.limits.cell_timeout, left))
                except StudentError as exc:
                    if first:
                        self.cell_errors.append({"cell": label, "error": str(exc)})
                except StudentCrash as exc:
                    if first:
                        self.cell_errors.append({"cell": label, "error": str(exc)})
                    crashed = n
                    break
            if crashed is None:
                self.sandbox = sb
                return
            for e in sb.events:
                if e not in self.events:
                    self.events.append(e)
            sb.close()
            skip.add(crashed)

    def get(self):
        if self.sandbox is None:
            self._start(first=True)
        elif not self.sandbox.alive:
            self._collect()
            if self.restarts >= MAX_RESTARTS:
                raise StudentCrash("not run: your notebook's process stopped too often")
            if time.monotonic() > self.deadline:
                raise StudentCrash("not run: the notebook's time limit was reached")
            self.restarts += 1
            self._start(first=False)
        return self.sandbox

    def _collect(self):
        if self.sandbox is not None:
            for e in self.sandbox.events:
                if e not in self.events:
                    self.events.append(e)

    def close(self):
        self._collect()
        out = bytes(self.sandbox.output) if self.sandbox else b""
        if self.sandbox is not None:
            self.sandbox.close()
        return out


def grade_notebook(assignment, nb, limits=None, seed=0):
    """Score a parsed submission; returns the results dict (Gradescope-like)."""
    limits = limits or Limits()
    steps, notes = plan(assignment, nb)
    session = Session(steps, limits, seed)
    ref = assignment.reference()
    trusted = {}
    for c in assignment.cells:  # the instructor's own set-up, run here too
        if c.kind in ("setup", "given"):
            exec(compile(c.source, f"<source {c.grade_id}>", "exec"), trusted)
    tests = []
    try:
        session.get()
        for cell in assignment.tests:
            ns = dict(trusted)
            ns.update({k: getattr(checks, k) for k in dir(checks) if not k.startswith("__")})
            ns.update({"np": np, "ref": ref, "_checks": checks,
                       "grading_rng": np.random.default_rng(
                           [seed, zlib.crc32(cell.grade_id.encode())])})
            for fn in assignment.functions:
                ns[fn] = StudentFunction(session.get, fn)
            checks._results = []
            try:
                run_hidden_aware(cell.source, ns)
                records = checks._results
            except Exception as exc:  # outside any check: nothing can be trusted
                records = [{"name": f"{cell.grade_id}: test cell", "weight": 1.0,
                            "hidden": False, "passed": False,
                            "message": f"the checks could not run: {checks._explain(exc)}"}]
                records += [dict(r, passed=False) for r in checks._results]
            finally:
                checks._results = None
            total = sum(r["weight"] for r in records) or 1.0
            for r in records:
                share = cell.points * r["weight"] / total
                tests.append({
                    "name": r["name"], "cell": cell.grade_id,
                    "score": round(share if r["passed"] else 0.0, 6),
                    "max_score": round(share, 6),
                    "output": r["message"],
                    "visibility": "hidden" if r["hidden"] else "visible",
                })
    finally:
        output = session.close()
    score = round(sum(t["score"] for t in tests), 4)
    return {
        "score": score,
        "max_score": assignment.max_score,
        "tests": tests,
        "notes": notes,
        "cell_errors": session.cell_errors,
        "events": session.events,
        "student_output": output.decode("utf-8", "replace")[-4000:],
        "sandbox": {"landlock_abi": session.landlock, "restarts": session.restarts},
        "seed": seed,
    }
