"""Grading one submission: run the student's cells fenced, check from outside.

The plan follows the instructor source, not the submission: read-only cells
run as the instructor wrote them, answer cells as the student wrote them
(matched by nbgrader ``grade_id``), cells the student added run where they
stand, and test cells of the submission are ignored, whatever their
metadata says (renamed, duplicated, deleted or newly marked cells change
which code runs, never which checks run or what they are worth).  The test
cells of the source (visible and hidden) then run *here*, in the grader's
process, with each graded function replaced by a ``StudentFunction`` that
calls into a sandbox; scoring data never passes through the student's
process.

Two processes per submission.  Visible checks call the *visible* process,
checks inside ``### BEGIN/END HIDDEN TESTS`` call a second, *hidden* one
that ran the same cells.  Everything the learner reads (cell errors, the
messages of visible checks) comes from the visible process, which never
receives a hidden input, so a submission cannot carry hidden inputs into
its feedback (say, by raising them in a later visible check).  What the
hidden process does is only counted; its problems are reported in fixed
words.

Time: each cell of the plan has ``cell_timeout``; the checks of one test
cell share ``cell_timeout`` of the student's time; the whole notebook has
``notebook_timeout``.  A cell that kills the process is reported and
skipped, and the plan runs again without it.
"""
import threading
import time
import zlib

import nbformat
import numpy as np

from . import checks, course
from .sandbox import Limits, Sandbox, StudentCrash, StudentError, StudentFunction

MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_CODE_CELLS = 1000
MAX_RESTARTS = 3
HIDDEN_TROUBLE = ("While the hidden checks ran, your code's process stopped or misbehaved; "
                  "the checks it was running failed.")


def read_submission(path):
    """The submitted notebook as nbformat v4, or a message saying why not."""
    try:
        if path.is_symlink():
            return None, "The notebook is a symbolic link; submit the file itself."
        st = path.stat()
        if not path.is_file():
            return None, "The notebook is not a regular file."
        if st.st_size > MAX_NOTEBOOK_BYTES:
            return None, f"The notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MB."
        data = path.read_bytes()
    except OSError as exc:
        return None, f"The notebook could not be read ({exc.strerror})."
    if not data.strip():
        return None, "The notebook file is empty."
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "The notebook is not UTF-8 text (is it a notebook at all?)."
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises many kinds for bad JSON
        return None, f"The notebook is not valid notebook JSON ({type(exc).__name__})."
    if not isinstance(nb.get("cells"), list):
        return None, "The notebook has no list of cells (not valid notebook JSON)."
    return nb, None


def _text(value):
    """A cell's source as nbformat allows it (a string or a list of strings)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return ""


def zero_result(max_score, notes, seed):
    """The results of a submission that could not be graded (missing,
    unreadable, crashed): no tests, a zero, and the reasons in ``notes``."""
    return {"score": 0.0, "max_score": float(max_score), "tests": [], "notes": list(notes),
            "events": [], "cell_errors": [], "seed": seed}


def kernel_notes(nb):
    """Say so when the notebook claims another language: it is graded as Python."""
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    names = []
    for key, field in (("kernelspec", "language"), ("kernelspec", "name"),
                       ("language_info", "name")):
        part = meta.get(key)
        if isinstance(part, dict) and isinstance(part.get(field), str):
            names.append(part[field])
    foreign = [n for n in names if not n.lower().startswith(("python", "ipython"))]
    if foreign:
        return [f"The notebook is marked as {foreign[0][:40]!r}, not Python; "
                "it was run as Python 3, like every submission."]
    return []


def plan(assignment, nb):
    """The cells to run in the sandbox, as (label, source), and notes."""
    notes = []
    by_id, seen_ids = {}, {}
    order = []  # the submission's cells: ("known", gid) or ("extra", source, index)
    n_code = 0
    for i, cell in enumerate(nb.get("cells", [])):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        n_code += 1
        if n_code > MAX_CODE_CELLS:
            notes.append(f"The notebook has more than {MAX_CODE_CELLS} code cells; "
                         "the cells after that were not run.")
            break
        gid = course.grade_id(cell)
        src = _text(cell.get("source", ""))
        if gid:
            gid = gid[:200]
            seen_ids[gid] = seen_ids.get(gid, 0) + 1
            by_id[gid] = src  # the last copy of a duplicated cell wins
            order.append(("known", gid))
        elif src.strip():
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


class TestCellStopped(Exception):
    """A test cell raised outside any check; ``hidden`` says where."""

    def __init__(self, exc, hidden):
        super().__init__(str(exc))
        self.exc, self.hidden = exc, hidden


def run_hidden_aware(source, namespace):
    """Execute a test cell, flagging the checks inside hidden blocks."""
    lines = []
    for line in source.splitlines():
        if line.strip() == "### BEGIN HIDDEN TESTS":
            line = line[: len(line) - len(line.lstrip())] + "_checks._hidden = True"
        elif line.strip() == "### END HIDDEN TESTS":
            line = line[: len(line) - len(line.lstrip())] + "_checks._hidden = False"
        lines.append(line)
    checks._hidden = False
    try:
        exec(compile("\n".join(lines), "<test cell>", "exec"), namespace)
    except Exception as exc:
        raise TestCellStopped(exc, checks._hidden) from None
    finally:
        checks._hidden = False


class Runner:
    """The student's process for one role (visible or hidden checks),
    started on first use and restarted, up to MAX_RESTARTS, if it dies."""

    def __init__(self, session, hidden):
        self.session, self.hidden = session, hidden
        self.sandbox = None
        self.started = False
        self.restarts = 0
        self.cell_errors = []
        self.events = []
        self.info = {}
        self.output = b""
        self.lock = threading.Lock()

    def _start(self, first):
        s = self.session
        skip = set()
        while True:
            sb = Sandbox(s.limits, s.seed)
            try:
                sb.start()
            except StudentCrash:
                if not (self.hidden and first):
                    self._collect(sb)
                sb.close()
                raise
            self.info = dict(sb.info)
            crashed = None
            for n, (label, src) in enumerate(s.steps):
                if n in skip:
                    continue
                left = s.deadline - time.monotonic()
                if left <= 0:
                    if first:
                        self.events.append("The notebook's time limit "
                                           f"({s.limits.notebook_timeout:g} s) was reached.")
                    break
                try:
                    sb.exec(src, label, timeout=min(s.limits.cell_timeout, left))
                except StudentError as exc:
                    if first:
                        self.cell_errors.append({"cell": label, "error": str(exc)})
                except StudentCrash as exc:
                    if first:
                        self.cell_errors.append({"cell": label, "error": str(exc)})
                    if not first and self.hidden:
                        self.events.append(HIDDEN_TROUBLE)
                    crashed = n
                    break
            if crashed is None:
                # The hidden process repeats the visible one's plan: only what
                # happens after it (during the hidden checks) is its own news.
                sb.plan_events = len(sb.events) if self.hidden else 0
                self.sandbox = sb
                return
            if not self.hidden:
                self._collect(sb)
            sb.close()
            skip.add(crashed)

    def get(self):
        with self.lock:
            if not self.started:
                self.started = True
                self._start(first=True)
            elif self.sandbox is None or not self.sandbox.alive:
                self._retire()
                if self.restarts >= MAX_RESTARTS:
                    raise StudentCrash("not run: your notebook's process stopped too often")
                if time.monotonic() > self.session.deadline:
                    raise StudentCrash("not run: the notebook's time limit was reached")
                self.restarts += 1
                self._start(first=False)
            return self.sandbox

    def warm(self):
        """Start ahead of the first call (in a thread); errors surface on get()."""
        try:
            self.get()
        except Exception:
            pass

    def _collect(self, sb):
        for e in sb.events[sb.plan_events:]:
            if e not in self.events:
                self.events.append(e)

    def _retire(self):
        if self.sandbox is not None:
            self._collect(self.sandbox)
            self.output = bytes(self.sandbox.output)
            self.sandbox.close()
            self.sandbox = None

    def close(self):
        with self.lock:
            self._retire()
        return self.output


class Session:
    """The processes of one submission and the time they may use."""

    def __init__(self, steps, limits, seed, split_hidden):
        self.steps, self.limits, self.seed = steps, limits, seed
        self.deadline = time.monotonic() + limits.notebook_timeout
        self.cell_deadline = self.deadline
        self.cell = None
        self.visible = Runner(self, hidden=False)
        self.hidden = Runner(self, hidden=True) if split_hidden else None
        self.budget_events = []

    def prepare(self):
        warm = None
        if self.hidden is not None:
            warm = threading.Thread(target=self.hidden.warm, daemon=True)
            warm.start()
        try:
            self.visible.get()
        finally:
            if warm is not None:
                warm.join()

    def begin_cell(self, grade_id):
        self.cell = grade_id
        self.cell_deadline = time.monotonic() + self.limits.cell_timeout

    def call(self, name, args, kwargs):
        runner = self.hidden if (checks._hidden and self.hidden is not None) else self.visible
        late = (f"The checks of {self.cell} used up the cell's time limit "
                f"({self.limits.cell_timeout:g} s of your code's time), so your code was stopped "
                "and the checks after that failed.")
        if self.deadline < self.cell_deadline:
            late = (f"The notebook's time limit ({self.limits.notebook_timeout:g} s) was reached, "
                    "so your code was stopped and the checks after that failed.")
        left = min(self.cell_deadline, self.deadline) - time.monotonic()
        if left <= 0:
            if not runner.hidden and late not in self.budget_events:
                self.budget_events.append(late)
            raise StudentCrash(f"not run: the time limit of {self.cell} was used up")
        return runner.get().call(name, args, kwargs, timeout=left, late=late)

    def events(self):
        out = list(self.visible.events) + self.budget_events
        if self.hidden is not None and (self.hidden.events or self.hidden.restarts):
            out.append(HIDDEN_TROUBLE)
        return out

    def close(self):
        output = self.visible.close()
        if self.hidden is not None:
            self.hidden.close()
        return output


def grade_notebook(assignment, nb, limits=None, seed=0, split_hidden=True):
    """Score a parsed submission; returns the results dict (Gradescope-like).

    split_hidden=False runs the hidden checks in the visible process too
    (only for the test that shows why they are split).
    """
    limits = limits or Limits()
    steps, notes = plan(assignment, nb)
    notes = kernel_notes(nb) + notes
    has_hidden = any("### BEGIN HIDDEN TESTS" in c.source for c in assignment.tests)
    session = Session(steps, limits, seed, split_hidden and has_hidden)
    ref = assignment.reference()
    trusted = {}
    for c in assignment.cells:  # the instructor's own set-up, run here too
        if c.kind in ("setup", "given"):
            exec(compile(c.source, f"<source {c.grade_id}>", "exec"), trusted)
    helpers = {k: getattr(checks, k) for k in dir(checks) if not k.startswith("__")}
    tests = []
    try:
        try:
            session.prepare()
        except StudentCrash:
            pass  # reported in the events; every check then fails on its own
        for cell in assignment.tests:
            ns = dict(trusted)
            ns.update(helpers)
            ns.update({"np": np, "ref": ref, "_checks": checks,
                       "grading_rng": np.random.default_rng(
                           [seed, zlib.crc32(cell.grade_id.encode())])})
            for fn in assignment.functions:
                ns[fn] = StudentFunction(session.call, fn)
            session.begin_cell(cell.grade_id)
            checks._results = []
            try:
                run_hidden_aware(cell.source, ns)
                records = checks._results
            except TestCellStopped as stop:
                # Outside any check: the checks after it never ran, so none
                # of this cell's checks can be trusted.
                if stop.hidden:
                    record = {"name": f"{cell.grade_id}: hidden checks", "hidden": True,
                              "message": "the hidden checks could not run to the end"}
                else:
                    record = {"name": f"{cell.grade_id}: test cell", "hidden": False,
                              "message": f"the checks could not run: {checks._explain(stop.exc)}"}
                records = [dict(record, weight=1.0, passed=False)]
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
    restarts = session.visible.restarts + (session.hidden.restarts if session.hidden else 0)
    info = session.visible.info
    return {
        "score": score,
        "max_score": assignment.max_score,
        "tests": tests,
        "notes": notes,
        "cell_errors": session.visible.cell_errors,
        "events": session.events(),
        "student_output": output.decode("utf-8", "replace")[-4000:],
        "sandbox": {"landlock_abi": info.get("landlock", 0), "scoped": info.get("scoped", False),
                    "isolation": info.get("isolation", "none"),
                    "private_tmpfs": bool(info.get("tmpfs")), "restarts": restarts},
        "seed": seed,
    }
