"""The demo class in ``demo/submitted``: synthetic students a fresh clone can grade.

ada    the reference solutions: full marks
brook  plausible bugs (below): loses exactly the points of the broken checks
cato   the untouched learner notebooks: no marks
dara   a truncated, invalid notebook file: a clear message and a zero
emil   correct code, plus a cell that never ends and one that tries to read
       the reference solutions: stopped, explained, and still graded
"""
import tempfile
from pathlib import Path

import nbformat

from . import course, notebooks

DEMO = course.ROOT / "demo" / "submitted"

# Plausible mistakes, as (answer cell, reference text, buggy text).
BUGS = {
    "dcl_backprop": [
        ("answer_dense_backward", "dW = dz.T @ x", "dW = dz.T @ x / len(x)"),
        ("answer_softmax", "z.max(axis=-1, keepdims=True)", "z.max()"),
        ("answer_softmax", "e.sum(axis=-1, keepdims=True)", "e.sum(axis=0, keepdims=True)"),
        ("answer_relu_grad", "> 0", ">= 0"),
    ],
}

RUNAWAY = "while True:\n    pass\n"
SNOOP = ("import glob\n"
         "leaked = [open(f).read() for f in glob.glob('/**/solutions/*.py', recursive=True)]\n")


def _introduce(nb, bugs):
    for gid, old, new in bugs:
        cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid]
        if not cells or old not in cells[0].source:
            raise ValueError(f"demo bug for {gid} no longer applies: {old!r}")
        cells[0].source = cells[0].source.replace(old, new)
    return nb


def students(aid, release):
    full = notebooks.fill_with_reference(release, aid)
    brook = _introduce(nbformat.from_dict(full), BUGS.get(aid, []))
    emil = nbformat.from_dict(full)
    emil.cells.insert(len(emil.cells) // 2, nbformat.v4.new_code_cell(SNOOP))
    emil.cells.insert(len(emil.cells) // 2, nbformat.v4.new_code_cell(RUNAWAY))
    for i, c in enumerate(emil.cells):
        c.id = f"emil-{i}"
    text = nbformat.writes
    return {"ada": text(full), "brook": text(brook), "cato": text(release),
            "dara": text(full)[:2000], "emil": text(emil)}


def build(check_only=False):
    stale = []
    for aid in course.assignments():
        release = nbformat.read(course.EXERCISES / aid / f"{aid}.ipynb", as_version=4)
        for sid, content in students(aid, release).items():
            target = DEMO / sid / aid / f"{aid}.ipynb"
            if not target.exists() or target.read_text() != content + "\n":
                stale.append(f"{sid}/{aid}")
                if not check_only:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(content + "\n")
    return stale
