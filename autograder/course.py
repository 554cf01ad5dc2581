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
``checks``  replaced by the check helpers of ``autograder/checks.py``.
``tests``   an nbgrader test cell; metadata ``grade_id`` and ``points``
            (and ``extra_credit: true`` for an optional part whose points
            come on top of the maximum); may hold ``### BEGIN/END HIDDEN
            TESTS`` blocks.
``demo``    read-only, not run by the grader (experiments, plots).
``free``    an ungraded cell the learner may edit.
Untagged code cells are read-only set-up the grader runs (imports, data).
"""
import ast
import functools
import importlib
import inspect
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "source"
EXERCISES = ROOT / "exercises"
CHECKS = Path(__file__).resolve().parent / "checks.py"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


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
    kind: str            # answer | given | checks | tests | demo | free | setup | markdown
    grade_id: str = ""
    source: str = ""
    points: float = 0.0
    extra_credit: bool = False   # tests cells: points on top of the maximum
    functions: list = field(default_factory=list)  # answer cells: what they define


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
        kind = next((k for k in ("answer", "given", "checks", "tests", "demo", "free")
                     if k in tags), "setup")
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
            cells.append(Cell("checks", "checks", CHECKS.read_text()))
            continue
        if kind == "tests":
            gid = c.metadata.get("grade_id")
            if not gid or "points" not in c.metadata:
                raise ValueError(f"{path}: a tests cell needs grade_id and points")
            cells.append(Cell("tests", gid, c.source, float(c.metadata["points"]),
                              extra_credit=bool(c.metadata.get("extra_credit", False))))
            continue
        cells.append(Cell(kind, f"{kind}_{i}", c.source))
    ids = [c.grade_id for c in cells if c.grade_id]
    dup = {g for g in ids if ids.count(g) > 1}
    if dup:
        raise ValueError(f"{path}: duplicate cell ids {sorted(dup)}")
    return Assignment(assignment_id, cells)


def instructor_notebook(a):
    """The nbgrader source notebook: solutions and hidden tests included."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for n, c in enumerate(a.cells):
        if c.kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(c.source)
            cell.id = f"md-{n}"
        else:
            cell = nbformat.v4.new_code_cell(c.source)
            cell.id = c.grade_id.replace("_", "-")
            if c.kind != "free":
                meta = {"grade": c.kind == "tests", "solution": c.kind == "answer",
                        "locked": c.kind != "answer", "grade_id": c.grade_id,
                        "schema_version": 3}
                if c.kind == "tests":
                    meta["points"] = c.points
                cell.metadata["nbgrader"] = meta
            if c.kind in ("checks", "given"):
                cell.metadata["jupyter"] = {"source_hidden": True}
            if c.kind == "demo":
                cell.metadata["tags"] = ["demo"]
        nb.cells.append(cell)
    return nb
