"""The notebooks as a learner runs them, in a real Jupyter kernel."""
import time

import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder import course
from tests.conftest import filled, release


def _run(nb):
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=False).execute()
    return nb


@pytest.mark.parametrize("aid", course.assignments())
def test_reference_passes_every_visible_check_in_a_kernel(aid):
    t = time.monotonic()
    nb = _run(filled(aid))
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "✓" in printed and "✗" not in printed
    print(f"{aid}: executed top to bottom in {time.monotonic() - t:.1f} s")


@pytest.mark.parametrize("aid", course.assignments())
def test_untouched_notebook_runs_every_check_of_a_cell_then_stops(aid):
    """Each check of the first test cell says "not implemented yet"; the cell
    fails at its end with one line, not a traceback through the checks."""
    nb = release(aid)
    with pytest.raises(CellExecutionError, match="checks failed"):
        _run(nb)
    first = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    printed = "".join(o.get("text", "") for o in first.outputs if o.get("output_type") == "stream")
    marks = [line for line in printed.splitlines() if line.startswith(("✓", "✗"))]
    assert len(marks) > 1 and all(m.startswith("✗") for m in marks), printed
    assert printed.count("not implemented yet") == len(marks)
    error = next(o for o in first.outputs if o.get("output_type") == "error")
    assert len(error["traceback"]) == 1 and "checks failed" in error["traceback"][0]
