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
def test_untouched_notebook_stops_at_the_first_check_saying_not_implemented(aid):
    with pytest.raises(CellExecutionError, match="not implemented yet"):
        _run(release(aid))
