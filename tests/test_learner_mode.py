"""The notebooks as a learner runs them, in a real Jupyter kernel."""
import re
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


def _optional_functions(a):
    """Functions that only extra-credit test cells call."""
    def called(cells):
        return {f for c in cells for f in a.functions if f"{f}(" in c.source}
    return called([c for c in a.tests if c.extra_credit]) - called(
        [c for c in a.tests if not c.extra_credit])


@pytest.mark.parametrize("aid", [aid for aid in course.assignments()
                                 if any(c.extra_credit for c in course.load(aid).tests)])
def test_run_all_goes_past_an_untouched_optional_part(aid):
    """Filled with the reference except the optional part's stubs, the notebook
    runs top to bottom without an error: the optional cell says it is not
    attempted.  (The capstone is shortened to a few updates in its free cell.)"""
    a = course.load(aid)
    optional = _optional_functions(a)
    assert optional, aid
    nb = filled(aid)
    stubs = {course.grade_id(c): c.source for c in release(aid).cells}
    for cell in nb.cells:
        gid = course.grade_id(cell)
        answer = next((c for c in a.cells if c.kind == "answer" and c.grade_id == gid), None)
        if answer and set(answer.functions) <= optional:
            cell.source = stubs[gid]
        if cell.source.startswith("config = capstone_config("):  # the free cell of the capstone
            cell.source += ("\nconfig.update(updates=4, eval_every=2, sample_at=(4,), "
                            "sample_length=8)")
    _run(nb)   # raises CellExecutionError at the first cell that fails
    printed = {course.grade_id(c) or n: "".join(o.get("text", "") for o in c.get("outputs", [])
                                                if o.get("output_type") == "stream")
               for n, c in enumerate(nb.cells) if c.cell_type == "code"}
    extra = [c.grade_id for c in a.tests if c.extra_credit]
    for gid in extra:
        assert "optional part is not attempted" in printed[gid], printed[gid]
        assert "✗" in printed[gid] and "✓" not in printed[gid]  # every check ran and said so
    assert "✗" not in "".join(v for k, v in printed.items() if k not in extra)
    if aid == "lstm":  # the capstone after the optional part ran to its end
        assert any("update    4/4" in v for v in printed.values()), list(printed.values())[-3:]


# Free cells that shorten the long demos for the test below (appended to the
# cell that starts with the key).
SHORTER = {"config = capstone_config(": "\nconfig.update(updates=2, eval_every=1, sample_at=(2,), "
                                        "sample_length=4, val_streams=4)",
           "LAGS = ": "\nLAGS, SEEDS, STEPS = [40], [0], 2",
           "text = (": "\ntext = text[:40]"}


def _run_demos(aid, stub):
    """Run the filled notebook in this process (no kernel; test cells left out)
    with the answer cell defining ``stub`` left as the learner gets it; the
    text each demo cell printed, {grade_id: text}."""
    import contextlib
    import io
    import warnings

    import matplotlib
    matplotlib.use("Agg")
    stubs = {course.grade_id(c): c.source for c in release(aid).cells}
    a = course.load(aid)
    answer = next(c.grade_id for c in a.cells if c.kind == "answer" and stub in c.functions)
    ns, printed = {"__name__": "__main__"}, {}
    for cell in filled(aid).cells:
        gid = course.grade_id(cell)
        if cell.cell_type != "code" or cell.metadata.get("nbgrader", {}).get("grade"):
            continue
        source = stubs[answer] if gid == answer else cell.source
        source += next((extra for key, extra in SHORTER.items() if source.startswith(key)), "")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(source, f"<{gid}>", "exec"), ns)
        if gid and gid.startswith("demo"):
            printed[gid] = out.getvalue()
    return printed


def _demo_functions(aid):
    """The graded functions of the notebook (its own and those pasted) that its demo cells name."""
    a = course.load(aid)
    demos = "\n".join(c.source for c in a.cells if c.kind == "demo")
    return [f for f in a.functions if re.search(rf"\b{f}\b", demos)]


@pytest.mark.parametrize("aid", course.assignments())
def test_a_demo_asks_for_a_missing_function_instead_of_computing_it(aid):
    """Item by item, a graded function that a demo uses is left as its stub:
    the demos then run without an error and one of them names that function
    as the one to write first (no read-only cell computes it instead)."""
    for f in _demo_functions(aid):
        printed = _run_demos(aid, f)
        asked = [gid for gid, text in printed.items()
                 if re.search(rf"\b{f}\b", text) and re.search(r"not written|missing", text)]
        assert asked, (aid, f, printed)
