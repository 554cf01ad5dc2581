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

Two passes, two processes, one after the other.  The *visible* pass runs
every test cell exactly as the learner's notebook has it (``course.
visible_source``: the same code, comparing with the same expected values),
calling a *visible* process; when it is done that process is stopped.  Only
then does the *hidden* pass start a second process, which runs the same
cells, and the hidden checks (``course.hidden_source``) call it.
Everything the learner reads (cell errors, the messages of visible checks)
comes from the visible process, which never receives a hidden input and is
gone before any hidden input exists, so a submission cannot carry hidden
inputs into its feedback, not even through a kernel object the two
processes could share (the fence denies those too).  What the hidden process
does is only counted; its problems are reported in fixed words.

Arguments: in the visible pass a call's in-place changes come back, as in a
notebook; in the hidden pass they never do, and a call that changes an
argument its contract does not let it change fails (``calls.py``), so
nothing a student's code does to its arguments can move the values the
hidden checks compare with.

Time is charged student time (``processes.StudentClock``), never the
grader's own: each cell of the plan has ``cell_timeout``; the checks of one
test cell share ``cell_timeout``; each process has ``notebook_timeout``.  A
cell that kills the process is reported and skipped, and the plan runs
again without it.

Points are for computing, not for matching: a visible check's points count
only when its function also passed a hidden check of values on fresh inputs
(``withhold_unearned``; the learner's notebook ships the visible expected
values, so a table of them passes every visible check).

Hidden inputs and the sandboxes' global random sources are keyed hashes of
the grading seed (``secret.py``): HMAC with the course key, a secret the
instructor keeps and no sandbox can read.  So code in the hidden process
that tries seeds until it reproduces the inputs it was given finds nothing,
and learns nothing it could signal through its pass count; the same seed
and key give the same grades.  Without a key (``key=None``) the hash is
keyed with nothing and the hidden inputs follow from the seed alone.
"""
import dataclasses
import functools
import threading

import nbformat
import numpy as np

from . import calls, checks, course, model, secret, wire
from .model import Limits
from .sandbox import Sandbox, StudentCrash, StudentError

MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_CODE_CELLS = 1000
MAX_RESTARTS = 3
# At most this share of an assignment's points is earned by a notebook that
# answers from a table of the values its learner notebook ships
# (``withhold_unearned``; tests/test_hostile.py checks it for every assignment).
UNEARNED_SHARE = 0.05
HIDDEN_TROUBLE = ("While the hidden checks ran, your code's process stopped or misbehaved; "
                  "the checks it was running failed.")


def load_submission(path):
    """The bytes of a submitted notebook file, or a message saying why not:
    (bytes, None) or (None, str)."""
    try:
        if path.is_symlink():
            return None, "The notebook is a symbolic link; submit the file itself."
        st = path.stat()
        if not path.is_file():
            return None, "The notebook is not a regular file."
        if st.st_size > MAX_NOTEBOOK_BYTES:
            return None, f"The notebook is larger than {MAX_NOTEBOOK_BYTES >> 20} MB."
        return path.read_bytes(), None
    except OSError as exc:
        return None, f"The notebook could not be read ({exc.strerror})."


def read_submission(source):
    """The submitted notebook as nbformat v4, or a message saying why not.

    source: the notebook's path, or the pair ``load_submission`` returned for
    it (read where the file lies, graded on another machine).
    """
    data, problem = source if isinstance(source, tuple) else load_submission(source)
    if data is None:
        return None, problem
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
            gid = wire.clean(gid, 200)
            seen_ids[gid] = seen_ids.get(gid, 0) + 1
            by_id[gid] = src  # the last copy of a duplicated cell wins
            order.append(("known", gid, i))
        elif src.strip():
            order.append(("extra", src, i))
    for gid, n in sorted(seen_ids.items()):
        if n > 1:
            notes.append(f"Cell '{gid}' appears {n} times; the last copy was used.")
    source_ids = {c.grade_id for c in assignment.cells if c.grade_id} | {course.EXPECTED_CELL}
    for gid in sorted(set(by_id) - source_ids):
        notes.append(f"Cell '{gid}' is not part of this assignment; it was run as your own cell.")

    # cells are named as the learner finds them (by function or heading), never by number
    own = course.own_cell_labels(nb.get("cells", []), {
        item[-1] for item in order if item[0] == "extra" or item[1] not in source_ids},
        course.headings(assignment))
    extras_after = {None: []}  # extra cells keyed by the known cell before them
    last = None
    for item in order:
        if item[0] == "known" and item[1] in source_ids:
            last = item[1]
            extras_after.setdefault(last, [])
        elif item[0] == "known":
            extras_after.setdefault(last, []).append((own[item[2]], by_id[item[1]]))
        else:
            extras_after.setdefault(last, []).append((own[item[2]], item[1]))

    steps = list(extras_after[None])
    for c in assignment.cells:
        if c.kind in ("setup", "given"):
            steps.append((course.cell_label(assignment, c.grade_id), c.source))
        elif c.kind == "answer":
            if c.grade_id in by_id:
                steps.append((course.cell_label(assignment, c.grade_id), by_id[c.grade_id]))
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


def run_test_code(source, namespace, label):
    """Execute a test cell's code; an exception outside a check stops it."""
    checks._hidden = False
    try:
        exec(compile(source, label, "exec"), namespace)
    except Exception as exc:
        raise TestCellStopped(exc, checks._hidden) from None
    finally:
        checks._hidden = False


class Runner:
    """The student's process for one pass (visible or hidden checks), started
    on first use and restarted, up to MAX_RESTARTS, if it dies."""

    def __init__(self, session, hidden):
        self.session, self.hidden = session, hidden
        self.sandbox = None
        self.started = False
        self.restarts = 0
        self.used = 0.0  # charged seconds of the processes retired so far
        self.plan_events = 0  # events of the live process while it ran the plan
        self.cell_errors = []
        self.events = []
        self.info = {}
        self.output = b""
        self.lock = threading.Lock()

    @property
    def left(self):
        """Charged seconds this pass may still use (``notebook_timeout`` in all)."""
        live = self.sandbox.charged if self.sandbox is not None else 0.0
        return self.session.limits.notebook_timeout - self.used - live

    def _start(self, first):
        s = self.session
        skip = set()
        while True:
            sb = Sandbox(s.limits, s.sandbox_seed)
            try:
                sb.start()
            except StudentCrash:
                self.plan_events = 0
                self._collect(sb)
                sb.close()
                raise
            self.info = dict(sb.info)
            crashed = None
            for n, (label, src) in enumerate(s.steps):
                if n in skip:
                    continue
                left = self.left - sb.charged
                if left <= 0:
                    if first and not self.hidden:
                        self.events.append("The notebook's time limit "
                                           f"({s.limits.notebook_timeout:g} s) was reached.")
                    break
                try:
                    sb.exec(src, label, timeout=min(s.limits.cell_timeout, left))
                except StudentError as exc:
                    if first and not self.hidden:
                        self.cell_errors.append({"cell": label, "error": str(exc)})
                except StudentCrash as exc:
                    if first and not self.hidden:
                        self.cell_errors.append({"cell": label, "error": str(exc)})
                    crashed = n
                    break
            if crashed is None:
                # The hidden process repeats the visible one's plan: only what
                # happens after it (during the hidden checks) is its own news.
                self.plan_events = len(sb.events) if self.hidden else 0
                self.sandbox = sb
                return
            self.used += sb.charged
            if not self.hidden:
                self.plan_events = 0
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
                if self.left <= 0:
                    raise StudentCrash("not run: the notebook's time limit was reached", timed_out=True)
                self.restarts += 1
                self._start(first=False)
            return self.sandbox

    def _collect(self, sb):
        for e in sb.events[self.plan_events:]:
            if e not in self.events:
                self.events.append(e)

    def _retire(self):
        if self.sandbox is not None:
            self._collect(self.sandbox)
            self.used += self.sandbox.charged
            self.output = bytes(self.sandbox.output)
            self.sandbox.close()
            self.sandbox = None

    def close(self):
        with self.lock:
            self._retire()
        return self.output


class Session:
    """The processes of one submission, the pass in progress and the time left."""

    def __init__(self, steps, limits, seed, policy, key=None):
        self.steps, self.limits, self.policy = steps, limits, policy
        self.sandbox_seed = secret.sandbox_seed(key, seed)
        self.visible = Runner(self, hidden=False)
        self.hidden = Runner(self, hidden=True)
        self.runner = self.visible
        self.cell = None
        self.cell_left = limits.cell_timeout
        self.budget_events = []
        self.calls = []  # (index of the check running, function) of the test cell's calls

    def begin_cell(self, grade_id):
        self.cell = grade_id
        self.cell_left = self.limits.cell_timeout

    def start_hidden_pass(self):
        """The visible process is stopped before the hidden one exists."""
        self.visible.close()
        self.runner = self.hidden

    def call(self, name, args, kwargs):
        if checks._results is not None:
            self.calls.append((len(checks._results), name))
        runner = self.runner
        hidden = runner is self.hidden
        late = (f"The checks of {self.cell} used up the cell's time limit "
                f"({self.limits.cell_timeout:g} s of your code's time), so your code was stopped "
                "and the checks after that failed.")
        sandbox = runner.get()
        left = min(self.cell_left, runner.left)
        if runner.left < self.cell_left:
            late = (f"The notebook's time limit ({self.limits.notebook_timeout:g} s) was reached, "
                    "so your code was stopped and the checks after that failed.")
        if left <= 0:
            if not hidden and late not in self.budget_events:
                self.budget_events.append(late)
            raise StudentCrash(f"not run: the time limit of {self.cell} was used up",
                               timed_out=True)
        before = sandbox.charged
        may_change = self.policy.may_change(name, args, kwargs) if hidden else None
        try:
            result, after, warned = sandbox.call(name, args, kwargs, timeout=left, late=late)
        finally:
            self.cell_left -= sandbox.charged - before
        if hidden:
            changed = calls.changed_arguments(name, args, kwargs, after, may_change)
            if changed:
                raise StudentError(f"{name} changed its {', '.join(changed)} in place; the "
                                   "functions of this course must not modify their inputs",
                                   "ValueError")
            calls.give_back(args, kwargs, after, may_change)
        else:
            calls.give_back(args, kwargs, after)
        calls.relay_warnings(warned)
        return result

    def events(self):
        out = list(self.visible.events) + self.budget_events
        if self.hidden.started and (self.hidden.events or self.hidden.restarts
                                    or self.hidden.cell_errors):
            out.append(HIDDEN_TROUBLE)
        return out

    def close(self):
        output = self.visible.close()
        self.hidden.close()
        return output


def _records(cell, source, namespace, label, hidden, calls):
    """Run one pass of a test cell; its check records ({name, weight, hidden,
    outcome, expects_error}, ``checks.check`` makes them), each with the graded
    functions it called (``calls``: the Session's log of (check index, name))."""
    checks._results = []
    calls.clear()
    try:
        run_test_code(source, namespace, label)
        return [dict(r, calls={n for i, n in calls if i == k})
                for k, r in enumerate(checks._results)]
    except TestCellStopped as stop:
        # Outside any check: the checks after it never ran, so none of this
        # pass's checks of the cell can be trusted.
        if hidden:
            name, message = (f"{cell.grade_id}: hidden checks",
                             "the hidden checks could not run to the end")
        else:
            name, message = (f"{cell.grade_id}: test cell",
                             f"the checks could not run: {checks._explain(stop.exc)}")
        first = {"name": name, "hidden": hidden, "weight": 1.0,
                 "outcome": model.Outcome(model.Kind.STOPPED, message)}
        return [first] + [dict(r, outcome=model.Outcome(model.Kind.STOPPED, r["outcome"].message))
                          for r in checks._results if r["hidden"] == hidden]
    finally:
        checks._results = None


def reference_dependencies(assignment):
    """{f: the graded functions that the reference f calls, directly or through
    helpers of its module}: where another function's bug can make f fail."""
    return _dependencies(assignment.id)


@functools.lru_cache(maxsize=None)
def _dependencies(aid):
    import ast
    import inspect
    import textwrap
    assignment = course.load(aid)
    ref = assignment.reference()
    graded = set(assignment.functions)
    names = {}

    def used(name):
        if name not in names:
            names[name] = set()
            try:
                tree = ast.parse(textwrap.dedent(inspect.getsource(getattr(ref, name))))
            except (OSError, TypeError, AttributeError, SyntaxError):
                return names[name]
            names[name] = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                           and n.id != name and callable(getattr(ref, n.id, None))
                           and inspect.isfunction(getattr(ref, n.id))}
        return names[name]

    out = {}
    for f in graded:
        seen, todo = set(), [f]
        while todo:
            for g in used(todo.pop()) - seen:
                seen.add(g)
                todo.append(g)
        out[f] = (seen & graded) - {f}
    return out


def withhold_unearned(by_cell, dependencies):
    """Points for computing, not for matching: mark the visible checks whose
    points a function did not earn (in place; returns ``by_cell``).

    The learner's notebook ships the expected values of its visible checks,
    so a function that looks its input up in a table of them would pass
    every visible check without computing anything; hidden checks call it on
    fresh inputs that no table holds.  So a passed visible check of a graded
    function f (the name before the check name's colon) earns its points only
    if f passed at least one hidden check of values: one of its own in the
    same test cell or, where that cell has none, in any cell.  (A hidden
    check that only asks for an exception is no evidence: a table can raise
    on whatever it does not hold.)  A function with a bug that only some
    fresh inputs reveal keeps its visible points.

    Honest work that fails every fresh input because of another function's
    bug keeps them too: f is excused when a function it relies on (that the
    reference f calls, ``dependencies[f]``, or that f's hidden checks call,
    such as the forward pass whose cache a backward pass takes) shows that
    it computes (it passed a hidden check of values) but has a bug (it
    failed a check).
    Functions that fail every fresh input excuse nobody, so a notebook of
    tables earns nothing from its visible checks.

    by_cell: {grade_id: [check records]}; dependencies: {f: set of graded
    functions} (``reference_dependencies``).  A withheld record gets the
    field ``withheld`` holding the reason, for the feedback.
    """
    def of(f, records):
        return [r for r in records if r["name"].split(":")[0] == f]

    def fresh(records):
        return [r for r in records if r["hidden"] and not r.get("expects_error")]

    everything = [r for records in by_cell.values() for r in records]
    computes = {f: not fresh(of(f, everything)) or any(r["outcome"].passed for r in fresh(of(f, everything)))
                for f in dependencies}
    buggy = {f for f in dependencies if computes[f] and not all(r["outcome"].passed for r in of(f, everything))}
    for records in by_cell.values():
        for r in records:
            f = r["name"].split(":")[0]
            if r["hidden"] or not r["outcome"].passed or f not in dependencies:
                continue
            evidence = fresh(of(f, records)) or fresh(of(f, everything))
            relies_on = set(dependencies[f]).union(*(h.get("calls", ()) for h in evidence)) - {f}
            if evidence and not any(h["outcome"].passed for h in evidence) and not relies_on & buggy:
                r["withheld"] = (f"Points withheld: {f} failed every hidden check on inputs "
                                 "your notebook never showed, so passing this check (whose "
                                 "expected values your notebook holds) does not show that it "
                                 "computes its result.")
    return by_cell


def grade_notebook(assignment, nb, limits=None, seed=0, key=None):
    """Score a parsed submission: a ``model.Result``.

    key: the course key (``secret.py``) the hidden inputs are drawn with;
    None: none, so anyone who knows ``seed`` can compute them.
    """
    limits = limits or Limits()
    steps, notes = plan(assignment, nb)
    notes = kernel_notes(nb) + notes
    session = Session(steps, limits, seed, assignment.policy(), key)
    expected = checks.expected_from(course.expected(assignment.id))
    trusted = {}
    for c in assignment.cells:  # the instructor's own set-up, run here too
        if c.kind in ("setup", "given"):
            exec(compile(c.source, f"<source {c.grade_id}>", "exec"), trusted)
    base = dict(trusted)
    base.update(assignment.helpers)
    base.update({"np": np, "_checks": checks, "expected": expected})
    for fn in assignment.functions:
        base[fn] = calls.StudentFunction(session.call, fn)
    by_cell = {c.grade_id: [] for c in assignment.tests}
    try:
        try:
            session.visible.get()
        except StudentCrash:
            pass  # reported in the events; every check then fails on its own
        for cell in assignment.tests:
            session.begin_cell(cell.grade_id)
            by_cell[cell.grade_id] += _records(cell, course.visible_source(cell), dict(base),
                                               f"<test cell {cell.grade_id}>", False,
                                               session.calls)
        if course.has_hidden(assignment):
            session.start_hidden_pass()
            ref = assignment.reference()
            for cell in assignment.tests:
                if course.HIDDEN_BEGIN not in cell.source:
                    continue
                session.begin_cell(cell.grade_id)
                ns = dict(base, ref=ref, grading_rng=np.random.default_rng(
                    secret.hidden_entropy(key, seed, cell.grade_id)))
                records = _records(cell, course.hidden_source(cell), ns,
                                   f"<hidden tests {cell.grade_id}>", True, session.calls)
                by_cell[cell.grade_id] += [r for r in records if r["hidden"]]
    finally:
        output = session.close()
    withhold_unearned(by_cell, reference_dependencies(assignment))
    graded = []
    for cell in assignment.tests:
        records = by_cell[cell.grade_id]
        total = sum(r["weight"] for r in records) or 1.0
        for r in records:
            share = round(cell.points * r["weight"] / total, 6)
            outcome = r["outcome"]
            outcome = dataclasses.replace(outcome, message=wire.clean(outcome.message, 4000),
                                          cause=wire.clean(outcome.cause, 300))
            withheld = r.get("withheld", "")
            graded.append(model.Check(
                name=wire.clean(r["name"], 300), cell=cell.grade_id, hidden=r["hidden"],
                points=share, score=share if outcome.passed and not withheld else 0.0,
                outcome=outcome, withheld=withheld))
    score = round(sum(c.score for c in graded), 4)
    extra_cells = tuple(c.grade_id for c in assignment.tests if c.extra_credit)
    extra = round(sum(c.score for c in graded if c.cell in extra_cells), 4)
    info = session.visible.info
    return model.Result(
        status=model.Status.GRADED,
        score=score,
        max_score=assignment.max_score,
        extra_credit=extra,
        extra_cells=extra_cells,
        checks=tuple(graded),
        notes=tuple(wire.clean(n, 1000) for n in notes),
        cell_errors=tuple(model.CellError(wire.clean(e["cell"], 200), wire.clean(e["error"], 4000))
                          for e in session.visible.cell_errors[:50]),
        events=tuple(wire.clean(e, 1000) for e in session.events()),
        student_output=output.decode("utf-8", "replace")[-4000:],
        fence=model.Fence(landlock_abi=info.get("landlock", 0) or 0,
                          scoped=bool(info.get("scoped")),
                          isolation=info.get("isolation") or "none",
                          private_tmpfs=bool(info.get("tmpfs")),
                          ipc_namespace=bool(info.get("ipc_namespace")),
                          seccomp=bool(info.get("seccomp")),
                          memory=info.get("memory") or "per-process",
                          secret_key=key is not None,
                          restarts=session.visible.restarts + session.hidden.restarts),
        seed=seed,
    )
