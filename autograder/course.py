"""The course's assignments as the grader and the generator see them.

An assignment's instructor source is ``source/<id>/<id>.md``, a MyST
Markdown notebook (jupytext) that reads as text.  Its code cells are marked
with tags:

``answer``  first line ``# solution: f g ...``; becomes one nbgrader answer
            cell per function, holding the reference function of
            ``solutions/<id>.py`` (body inside ``### BEGIN/END SOLUTION``);
            ``module.f`` names a function of another module (an earlier
            chapter's, which learners paste in from their own work).
``given``   first line ``# given: module.name ...``; a read-only cell with
            the source of helper functions learners may use.
``checks``  replaced by the check helpers of ``autograder/checks.py``
            (``# checks: without name ...`` leaves out helpers that would
            hand out a graded function of this assignment), followed by a
            cell holding the expected values (below).
``tests``   an nbgrader test cell; metadata ``grade_id`` and ``points``
            (and ``extra_credit: true`` for an optional part whose points
            come on top of the maximum).  Its visible part sets up inputs,
            then an ``### BEGIN/END EXPECTED`` block computes, from the
            reference (``ref``) and the ``mistakes`` cells, the attributes of
            ``want`` that the visible checks compare with, then come the
            checks; ``### BEGIN/END HIDDEN TESTS`` blocks follow.
``mistakes`` instructor-only code (variants of the reference that make a
            learner's typical mistakes): used by EXPECTED blocks, never
            shipped and never run by the grader.
``demo``    read-only, not run by the grader (experiments, plots); a demo cell
            ``# generated: module.function`` is replaced, when the notebook
            is made, by the source that function returns (data a notebook
            must carry, such as the capstone's text).
``free``    an ungraded cell the learner may edit.
Untagged code cells are read-only set-up the grader runs (imports, data).

The expected values are computed when the learner notebooks are made
(``compute_expected``), embedded in them as data, and read back from the
committed learner notebook by the grader (``expected``): the learner's
notebook and the grader compare with the very same numbers, and no learner
notebook holds code that computes a graded function.  The EXPECTED block
becomes ``want = expected("<grade_id>")`` and every test cell ends with
``report_checks()`` (an extra-credit cell with ``report_checks(optional=True)``:
left untouched, it reports the part as not attempted instead of failing).
"""
import ast
import base64
import functools
import hashlib
import importlib
import inspect
import json
import re
import textwrap
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "source"
EXERCISES = ROOT / "exercises"
CHECKS = Path(__file__).resolve().parent / "checks.py"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


FOLDERS = ("autograder", "solutions", "source", "exercises")  # what grading reads


def files_hash(root=None):
    """sha256 of every file (path and bytes) grading reads: autograder/,
    solutions/, source/ and exercises/ (caches and hidden files left out).
    A grading cluster's workers must agree on it; a record is kept by
    ``--resume`` only while it is the same."""
    root = Path(root or ROOT)
    h = hashlib.sha256()
    for folder in FOLDERS:
        for p in sorted((root / folder).rglob("*")):
            rel = p.relative_to(root)
            if p.is_file() and not any(part == "__pycache__" or part.startswith(".")
                                       for part in rel.parts):
                h.update(rel.as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def assignments():
    """Assignment ids, in the order of the source folders."""
    return sorted(p.name for p in SOURCE.iterdir() if (p / f"{p.name}.md").is_file())


def _directive(cell, word):
    first = cell.source.lstrip().splitlines()[0] if cell.source.strip() else ""
    prefix = f"# {word}:"
    if not first.startswith(prefix):
        raise ValueError(f"a '{word}' cell must start with '{prefix} ...':\n{cell.source}")
    return first[len(prefix):].split()


def function_cell_source(fn):
    """A reference function with its body between nbgrader's solution markers.

    The signature and docstring stay visible; everything after them,
    comments included, is solution.
    """
    src = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(src).body[0]
    lines = src.splitlines()
    first = tree.body[0]
    if ast.get_docstring(tree) is not None:
        cut = first.end_lineno           # the line that closes the docstring
        indent = " " * tree.body[min(1, len(tree.body) - 1)].col_offset
    else:
        cut = first.lineno - 1
        while cut > tree.lineno and lines[cut - 1].strip().startswith("#"):
            cut -= 1                     # comments above the first statement
        indent = " " * first.col_offset
    return "\n".join(lines[:cut] + [indent + "### BEGIN SOLUTION"] + lines[cut:]
                     + [indent + "### END SOLUTION"])


@dataclass
class Cell:
    kind: str            # answer | given | checks | tests | mistakes | demo | free | setup | markdown
    grade_id: str = ""
    source: str = ""
    points: float = 0.0
    extra_credit: bool = False   # tests cells: points on top of the maximum
    functions: list = field(default_factory=list)  # answer cells: what they define
    generated: str = ""  # demo cells: "module.function" that makes their source


@dataclass
class Assignment:
    id: str
    cells: list

    @property
    def functions(self):
        return [f for c in self.cells if c.kind == "answer" for f in c.functions]

    @property
    def tests(self):
        return [c for c in self.cells if c.kind == "tests"]

    @property
    def max_score(self):
        """Points of the required test cells (extra credit comes on top)."""
        return float(sum(c.points for c in self.tests if not c.extra_credit))

    @property
    def extra_credit(self):
        return float(sum(c.points for c in self.tests if c.extra_credit))

    def reference(self):
        return importlib.import_module(f"solutions.{self.id}")

    @property
    def helpers(self):
        """The check helpers of its notebook: name -> object (``checks``' public
        names, less those its checks cell leaves out)."""
        from . import checks
        cell = next((c for c in self.cells if c.kind == "checks"), None)
        left_out = set(cell.functions) if cell else set()
        return {k: getattr(checks, k) for k in dir(checks)
                if not k.startswith("__") and k not in left_out}

    def policy(self):
        """What the contract lets each graded function change (calls.Policy)."""
        from .calls import Policy, signatures_of
        ref = self.reference()
        return Policy(getattr(ref, "MUTATES", {}), signatures_of(ref, self.functions))


def _heading(markdown):
    """The last heading of a Markdown text, printable and short, or None."""
    found = [line.strip().lstrip("#").strip() for line in str(markdown).splitlines()
             if line.lstrip().startswith("#")]
    found = [h for h in found if h]
    return "".join(ch for ch in found[-1] if ch.isprintable())[:60] if found else None


def _under(heading):
    return f"under the heading '{heading}'" if heading else "at the top of the notebook"


def cell_label(assignment, gid):
    """How messages name a cell of the course (Jupyter shows no cell numbers): an
    answer cell by its functions, a read-only cell by the heading above it and its
    first line."""
    heading = None
    for c in assignment.cells:
        if c.kind == "markdown":
            heading = _heading(c.source) or heading
        elif c.grade_id == gid:
            if c.kind == "answer":
                return f"<your answer cell for {', '.join(c.functions)}>"
            first = next((line.strip() for line in c.source.splitlines() if line.strip()), "")
            return f"<read-only cell {_under(heading)}, starting '{first[:40]}'>"
    return f"<cell {gid}>"


def headings(assignment):
    """Every heading of the course's Markdown cells of an assignment."""
    return {h for c in assignment.cells if c.kind == "markdown"
            for h in map(_heading, c.source.splitlines()) if h}


def own_cell_labels(cells, own, known_headings):
    """{index: label} for the learner's own code cells of a notebook: ``cells`` are its
    cell dicts, ``own`` the indices of the code cells that are the learner's own.  Each is
    named by the course's heading above it and its rank there ("your own cell 2 under
    the heading '3. The whole sequence'"); headings the learner wrote are not used (a
    label is the grader's words: no text of a submission goes into it)."""
    labels, heading, count = {}, None, 0
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            continue
        if cell.get("cell_type") == "markdown":
            src = cell.get("source", "")
            if isinstance(src, list):
                src = "".join(v for v in src if isinstance(v, str))
            h = _heading(src if isinstance(src, str) else "")
            if h in known_headings:
                heading, count = h, 0
        elif i in own:
            count += 1
            labels[i] = f"<your own cell {count} {_under(heading)}>"
    return labels


def grade_id(cell):
    """The nbgrader ``grade_id`` of a notebook cell, or None.

    Safe on hand-edited submissions: any metadata that is not the expected
    dict of a string reads as no id.
    """
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    gid = meta.get("grade_id") if isinstance(meta, dict) else None
    return gid if isinstance(gid, str) and gid else None


def _tags(cell):
    return set(cell.metadata.get("tags", []))


@functools.lru_cache(maxsize=None)
def load(assignment_id):
    """Parse ``source/<id>/<id>.md`` and expand answer, given and checks cells."""
    path = SOURCE / assignment_id / f"{assignment_id}.md"
    nb = jupytext.read(path)
    ref = importlib.import_module(f"solutions.{assignment_id}")
    cells, seen = [], set()
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            cells.append(Cell("markdown", source=c.source))
            continue
        tags = _tags(c)
        kind = next((k for k in ("answer", "given", "checks", "tests", "mistakes", "demo",
                                 "free") if k in tags), "setup")
        if kind == "answer":
            for dotted in _directive(c, "solution"):
                # "name" is from this assignment's module; "module.name" brings
                # a function of an earlier chapter for the learner to paste in.
                mod, _, name = dotted.rpartition(".")
                fn = getattr(importlib.import_module(mod) if mod else ref, name)
                cells.append(Cell("answer", f"answer_{name}", function_cell_source(fn),
                                  functions=[name]))
            continue
        if kind == "given":
            parts = []
            for dotted in _directive(c, "given"):
                mod, name = dotted.rsplit(".", 1)
                parts.append(textwrap.dedent(
                    inspect.getsource(getattr(importlib.import_module(mod), name))))
            body = "\n".join(c.source.splitlines()[1:]).strip()
            source = "\n\n".join(([body] if body else []) + parts)
            cells.append(Cell("given", f"given_{i}", source))
            continue
        if kind == "checks":
            without = _directive(c, "checks")[1:] if c.source.startswith("# checks:") else []
            cells.append(Cell("checks", "checks", checks_source(without), functions=without))
            continue
        if kind == "tests":
            gid = c.metadata.get("grade_id")
            if not gid or "points" not in c.metadata:
                raise ValueError(f"{path}: a tests cell needs grade_id and points")
            cells.append(Cell("tests", gid, c.source, float(c.metadata["points"]),
                              extra_credit=bool(c.metadata.get("extra_credit", False))))
            continue
        generated = _directive(c, "generated")[0] if (
            kind == "demo" and c.source.startswith("# generated:")) else ""
        cells.append(Cell(kind, f"{kind}_{i}", c.source, generated=generated))
    ids = [c.grade_id for c in cells if c.grade_id]
    dup = {g for g in ids if ids.count(g) > 1}
    if dup:
        raise ValueError(f"{path}: duplicate cell ids {sorted(dup)}")
    return Assignment(assignment_id, cells)


def instructor_notebook(a, packed=None, expand=True):
    """The nbgrader source notebook: solutions and hidden tests included.

    packed: the expected values (``pack_expected``) for the cell after the
    check helpers; mistakes cells are left out.  expand=False leaves a
    generated demo cell as its ``# generated:`` line (the grader has what
    the committed learner notebook made of it, and may run without the book).
    """
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}

    def code_cell(kind, gid, source, points=None):
        cell = nbformat.v4.new_code_cell(source)
        cell.id = gid.replace("_", "-")
        if kind != "free":
            meta = {"grade": kind == "tests", "solution": kind == "answer",
                    "locked": kind != "answer", "grade_id": gid, "schema_version": 3}
            if kind == "tests":
                meta["points"] = points
            cell.metadata["nbgrader"] = meta
        if kind in ("checks", "given", "expected"):
            cell.metadata["jupyter"] = {"source_hidden": True}
        if kind == "demo":
            cell.metadata["tags"] = ["demo"]
        return cell

    for n, c in enumerate(a.cells):
        if c.kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(c.source)
            cell.id = f"md-{n}"
            nb.cells.append(cell)
        elif c.kind == "tests":
            nb.cells.append(code_cell("tests", c.grade_id, test_source(c), c.points))
        elif c.generated and expand:
            mod, name = c.generated.rsplit(".", 1)
            nb.cells.append(code_cell(c.kind, c.grade_id,
                                      getattr(importlib.import_module(mod), name)()))
        elif c.kind != "mistakes":
            nb.cells.append(code_cell(c.kind, c.grade_id, c.source))
        if c.kind == "checks" and packed is not None:
            nb.cells.append(code_cell("expected", EXPECTED_CELL, expected_cell_source(packed)))
    return nb


# ----------------------------------------------------------------------------
# The check helpers as inserted into a notebook


def checks_source(without=()):
    """autograder/checks.py, less the top-level functions named in ``without``."""
    text = CHECKS.read_text()
    if not without:
        return text
    lines = text.splitlines(keepends=True)
    cut = set()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name in without:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            cut.update(range(start - 1, node.end_lineno))
    missing = set(without) - {n.name for n in ast.parse(text).body
                              if isinstance(n, ast.FunctionDef)}
    if missing:
        raise ValueError(f"'# checks: without' names no helper: {sorted(missing)}")
    return "".join(line for i, line in enumerate(lines) if i not in cut)


# ----------------------------------------------------------------------------
# Test cells: what the learner's notebook runs, and what the grader runs

HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
EXPECTED_BEGIN, EXPECTED_END = "### BEGIN EXPECTED", "### END EXPECTED"
REPORT = "report_checks()"
REPORT_OPTIONAL = "report_checks(optional=True)"  # an extra-credit cell: untouched, it passes
EXPECTED_CELL = "expected_values"  # grade_id of the notebook cell holding them


def _split_expected(cell):
    """(lines before the EXPECTED block, the block's lines, the lines after)."""
    lines = cell.source.splitlines()
    marks = [i for i, line in enumerate(lines) if line.strip() in (EXPECTED_BEGIN, EXPECTED_END)]
    if not marks:
        return lines, [], []
    if len(marks) != 2 or lines[marks[0]].strip() != EXPECTED_BEGIN:
        raise ValueError(f"{cell.grade_id}: one '{EXPECTED_BEGIN}' ... '{EXPECTED_END}' block, please")
    a, b = marks
    return lines[:a], lines[a + 1:b], lines[b + 1:]


def test_source(cell):
    """A test cell as the instructor notebook holds it: the EXPECTED block
    replaced by a line that reads the values, ``report_checks()`` at the end."""
    before, block, after = _split_expected(cell)
    middle = []
    if block:
        indent = re.match(r"\s*", block[0]).group() if block[0].strip() else ""
        middle = [f'{indent}want = expected("{cell.grade_id}")']
    report = REPORT_OPTIONAL if cell.extra_credit else REPORT
    return "\n".join(before + middle + after).rstrip() + "\n" + report


def visible_source(cell):
    """The test cell of the learner's notebook (hidden tests removed as
    nbgrader removes them): the grader's visible checks run exactly this."""
    out, hidden = [], False
    for line in test_source(cell).splitlines():
        if line.strip() == HIDDEN_BEGIN:
            hidden = True
        elif line.strip() == HIDDEN_END:
            hidden = False
        elif not hidden:
            out.append(line)
    return "\n".join(out)


class _DropVisibleChecks(ast.NodeTransformer):
    """Remove ``with check(...)`` blocks outside the hidden parts."""

    def __init__(self, hidden_lines):
        self.hidden_lines = hidden_lines

    def visit_With(self, node):
        is_check = any(isinstance(i.context_expr, ast.Call)
                       and getattr(i.context_expr.func, "id", None) == "check" for i in node.items)
        if is_check and node.lineno not in self.hidden_lines:
            return ast.Pass()
        return self.generic_visit(node)


def hidden_source(cell):
    """The code the grader runs for a cell's hidden checks: the whole cell with
    its visible checks removed (their set-up stays, hidden blocks may use it)
    and the hidden blocks flagged (``_checks._hidden``)."""
    lines, hidden, inside = [], set(), False
    for n, line in enumerate(test_source(cell).splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip())]
        if line.strip() == HIDDEN_BEGIN:
            line, inside = indent + "_checks._hidden = True", True
        elif line.strip() == HIDDEN_END:
            line, inside = indent + "_checks._hidden = False", False
        elif inside:
            hidden.add(n)
        if line.strip() not in (REPORT, REPORT_OPTIONAL):
            lines.append(line)
    tree = _DropVisibleChecks(hidden).visit(ast.parse("\n".join(lines)))
    return ast.unparse(ast.fix_missing_locations(tree))


def has_hidden(assignment):
    return any(HIDDEN_BEGIN in c.source for c in assignment.tests)


# ----------------------------------------------------------------------------
# The expected values: computed from the reference when notebooks are made


class _Guard:
    """Stands for a learner's function where only the reference may run."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"an EXPECTED block (or the set-up before it) called "
                           f"{self.name}, the learner's function: use ref.{self.name}")


def compute_expected(a):
    """{test cell grade_id: {name: value}}: what each EXPECTED block assigns to ``want``."""
    from . import checks
    import numpy
    base = {"np": numpy, "ref": a.reference()}
    for c in a.cells:
        if c.kind in ("setup", "given", "mistakes"):
            exec(compile(c.source, f"<source {c.grade_id}>", "exec"), base)
    values = {}
    for c in a.tests:
        before, block, _ = _split_expected(c)
        if not block:
            continue
        ns = dict(base)
        ns.update({name: _Guard(name) for name in a.functions})
        ns.update({"check": _Guard("check"), "want": checks.Expected()})
        code = "\n".join(before + [textwrap.dedent("\n".join(block))])
        exec(compile(code, f"<expected {c.grade_id}>", "exec"), ns)
        values[c.grade_id] = dict(vars(ns["want"]))
    return values



def digest(assignment_id):
    """What the expected values of an assignment depend on: its source, the
    reference package and the check helpers."""
    h = hashlib.sha256()
    for p in [SOURCE / assignment_id / f"{assignment_id}.md", CHECKS,
              *sorted((ROOT / "solutions").glob("*.py"))]:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def pack_expected(assignment_id, values):
    """The text the notebook's expected-values cell holds."""
    from .checks import _encode_plain
    data = {"digest": digest(assignment_id), "values": values}
    raw = json.dumps(_encode_plain(data), sort_keys=False, allow_nan=False).encode()
    text = base64.b64encode(zlib.compress(raw, 9)).decode()
    return "\n".join(text[i:i + 96] for i in range(0, len(text), 96))


EXPECTED_HEADER = ("# The values the checks compare with, computed by the reference solutions\n"
                   "# when this notebook was made (the notebook holds no code of theirs).\n")


def expected_cell_source(packed):
    body = "\n".join(f'    "{line}"' for line in packed.splitlines())
    return f"{EXPECTED_HEADER}expected = expected_from(load_expected(\n{body}\n)[\"values\"])"


class StaleNotebook(RuntimeError):
    """The committed learner notebook does not match the sources."""


@functools.lru_cache(maxsize=None)
def expected(assignment_id):
    """The expected values embedded in the committed learner notebook, after
    checking that they were made from the current sources."""
    from .checks import load_expected
    path = EXERCISES / assignment_id / f"{assignment_id}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next((c for c in nb.cells if grade_id(c) == EXPECTED_CELL), None)
    if cell is None:
        return {}
    calls = [n for n in ast.walk(ast.parse(cell.source))
             if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "load_expected"]
    data = load_expected(ast.literal_eval(calls[0].args[0]))
    if data.get("digest") != digest(assignment_id):
        raise StaleNotebook(f"{path} was made from other sources: run "
                            "`python -m autograder notebooks` and commit the result")
    return data["values"]
