"""A learner notebook run as a learner runs it: in a Jupyter kernel, top to bottom.

``run`` executes a notebook with nbclient (errors do not stop it, as when a
learner runs every cell) and returns what the learner saw: the verdict of
every check (the ✓ and ✗ lines the checks print), the test cells that
stopped outside a check, and how long each cell took.  The parity test
compares these verdicts with the grader's; ``benchmarks/bench_cells.py``
prints the times.
"""
import time
from dataclasses import dataclass, field

import nbformat

from . import course


@dataclass
class Run:
    verdicts: dict = field(default_factory=dict)   # check name -> passed
    stopped: list = field(default_factory=list)    # grade_ids of test cells that raised outside a check
    seconds: list = field(default_factory=list)    # (cell label, seconds) in order
    errors: list = field(default_factory=list)     # (cell label, ename, evalue) of non-test cells


def without_demos(nb):
    """The notebook without its demo cells (experiments the grader never runs)."""
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if "demo" not in c.get("metadata", {}).get("tags", [])]
    return nb


def label(cell, n):
    gid = course.grade_id(cell)
    tags = cell.get("metadata", {}).get("tags", [])
    return gid or ("demo" if "demo" in tags else f"cell {n}")


def verdicts_of(text):
    """{check name: passed} from the printed ✓ / ✗ lines of a test cell."""
    found = {}
    for line in text.splitlines():
        if line.startswith("✓ "):
            found[line[2:]] = True
        elif line.startswith("✗ ") and line.endswith(":"):
            found[line[2:-1]] = False
    return found


def run(nb, kernel_name="python3", timeout=600, cwd=None):
    """Execute ``nb`` (a copy) cell by cell; returns a ``Run``."""
    from nbclient import NotebookClient
    nb = nbformat.from_dict(nb)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                            resources={"metadata": {"path": cwd}} if cwd else {})
    out = Run()
    with client.setup_kernel():
        for n, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            t0 = time.perf_counter()
            client.execute_cell(cell, n)
            out.seconds.append((label(cell, n), time.perf_counter() - t0))
            text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                           if o.get("output_type") == "stream")
            is_test = cell.get("metadata", {}).get("nbgrader", {}).get("grade")
            if is_test:
                out.verdicts.update(verdicts_of(text))
            for o in cell.get("outputs", []):
                if o.get("output_type") == "error":
                    if is_test and o.get("ename") != "ChecksFailed":
                        out.stopped.append(course.grade_id(cell))
                    elif not is_test:
                        out.errors.append((label(cell, n), o.get("ename"), o.get("evalue")))
    return out


def grader_verdicts(result):
    """{check name: passed} of the visible checks in a grader result, and the
    test cells that stopped outside a check."""
    verdicts, stopped = {}, []
    for t in result["tests"]:
        if t["visibility"] != "visible":
            continue
        if t["name"] == f"{t['cell']}: test cell":
            stopped.append(t["cell"])
            continue
        # withheld points (grade.withhold_unearned) do not change the verdict
        verdicts[t["name"]] = t["score"] >= t["max_score"] or bool(t.get("withheld"))
    return verdicts, stopped
