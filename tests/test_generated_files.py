"""Committed generated files must equal a fresh generation, and give nothing away."""
import ast
import copy
import inspect
import itertools
import json
import warnings

import numpy as np
import pytest

from autograder import course, demo, notebooks
from tests.conftest import release


def test_learner_notebooks_are_not_stale():
    assert notebooks.build(check_only=True) == [], \
        "regenerate with: python -m autograder notebooks"


def test_demo_class_is_not_stale():
    assert demo.build(check_only=True) == [], "regenerate with: python -m autograder demo"


@pytest.mark.parametrize("aid", course.assignments())
def test_learner_notebook_hides_solutions_and_hidden_tests(aid):
    text = (course.EXERCISES / aid / f"{aid}.ipynb").read_text()
    for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "grading_rng", "ref."):
        assert marker not in text, marker
    a = course.load(aid)
    nb = release(aid)
    answer_cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(answer_cells) == len([c for c in a.cells if c.kind == "answer"])
    for c in answer_cells:
        assert "raise NotImplementedError()" in c.source
    # No body line of the reference (beyond signatures and docstrings) is shown;
    # a line the shipped docstrings spell out, or that the instructor wrote into
    # the source's own cells (an equation in a visible check), is deliberate.
    docs = "\n".join(ast.get_docstring(f) or "" for c in a.cells if c.kind == "answer"
                     for f in ast.parse(c.source).body if isinstance(f, ast.FunctionDef))
    source_text = (course.SOURCE / aid / f"{aid}.md").read_text()
    for c in a.cells:
        if c.kind != "answer":
            continue
        body = c.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
        for line in body.splitlines():
            deliberate = line.strip() in docs or line.strip() in source_text
            if len(line.strip()) > 25 and not deliberate:
                assert line.strip() not in text, line


@pytest.mark.parametrize("aid", course.assignments())
def test_every_graded_function_has_an_answer_cell_and_points(aid, curriculum_functions):
    a = course.load(aid)
    names = curriculum_functions[aid]
    optional = {"gru_step_forward", "gru_step_backward"}
    missing = [f for f in names if f not in a.functions and f not in optional]
    assert not missing, f"graded functions without an answer cell: {missing}"
    assert all(c.points > 0 for c in a.tests)
    assert json.loads((course.EXERCISES / aid / f"{aid}.ipynb").read_text())["nbformat"] == 4


@pytest.fixture(scope="module")
def graded_calls():
    """{function: [(args, kwargs, result)]}: every call the grader makes of a
    graded function when it grades the reference, for every assignment."""
    from autograder import grade
    from autograder.sandbox import Sandbox
    from tests.conftest import filled
    calls, original = {}, Sandbox.call

    def record(self, name, args, kwargs, **kw):
        out = original(self, name, args, kwargs, **kw)
        calls.setdefault(name, []).append((copy.deepcopy(list(args)), copy.deepcopy(kwargs),
                                           out[0]))
        return out

    Sandbox.call = record
    try:
        for aid in course.assignments():
            grade.grade_notebook(course.load(aid), filled(aid), seed=0)
    finally:
        Sandbox.call = original
    return calls


def _same(got, want):
    try:
        if isinstance(want, (tuple, list)):
            return (isinstance(got, (tuple, list)) and len(got) == len(want)
                    and all(_same(g, w) for g, w in zip(got, want)))
        if isinstance(want, dict):
            return isinstance(got, dict) and set(got) == set(want) and \
                all(_same(got[k], want[k]) for k in want)
        w = np.asarray(want, dtype=np.float64)
        g = np.asarray(got, dtype=np.float64)
        return g.shape == w.shape and bool(np.allclose(g, w, rtol=1e-6, atol=1e-12))
    except Exception:
        return False


@pytest.mark.parametrize("aid", course.assignments())
def test_no_learner_notebook_computes_a_graded_function(aid, graded_calls):
    """Run every cell a learner notebook ships outside its answer stubs, test
    cells and demos (the check helpers, the expected values, set-up and given
    code, and the functions test cells define at their top level), then try
    every function it defined on every call the grader makes of every graded
    function of the course: none may give the reference's results.  Functions
    nested in test cells may compute with NumPy only around a call of the
    learner's own functions (finite differences of YOUR forward pass)."""
    nb = release(aid)
    ns = {}
    graded = {f for a in course.assignments() for f in course.load(a).functions}
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        meta = c.metadata.get("nbgrader", {})
        tags = c.metadata.get("tags", [])
        if meta.get("grade"):
            tree = ast.parse(c.source)
            top = [n for n in tree.body if isinstance(n, ast.FunctionDef)
                   or isinstance(n, ast.Assign) and isinstance(n.value, ast.Lambda)]
            local = {n.name if isinstance(n, ast.FunctionDef) else n.targets[0].id for n in top}
            for node in ast.walk(tree):
                nested = isinstance(node, (ast.FunctionDef, ast.Lambda)) and not any(
                    node is t or getattr(t, "value", None) is node for t in top)
                if nested:  # numerics of its own only around the learner's functions
                    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                    assert names & (graded | local) or "np" not in names, \
                        f"{course.grade_id(c)} computes with NumPy without calling a learner " \
                        f"function:\n" + ast.unparse(node)[:300]
            # Its top-level functions are tried below like every shipped function
            # (one whose definition needs the cell's variables must call the learner's).
            for node in top:
                try:
                    exec(compile(ast.Module(body=[node], type_ignores=[]), "<test>", "exec"), ns)
                except NameError:
                    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                    assert names & (graded | local) or "np" not in names, ast.unparse(node)[:300]
            continue
        if meta.get("solution") or "demo" in tags:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(c.source, f"<{course.grade_id(c)}>", "exec"), ns)
    shipped = {k: v for k, v in ns.items() if inspect.isfunction(v) or isinstance(v, type(len))}
    assert shipped
    for name, fn in shipped.items():
        for graded_name, recorded in graded_calls.items():
            assert not reproduces(fn, recorded), \
                f"{aid}: {name} computes the graded function {graded_name}"


def reproduces(fn, recorded):
    """Whether ``fn``, given the arguments of every recorded call in some
    order, returns the recorded results (a tuple's leading arrays will do:
    an oracle need not return the cache)."""
    args0, kwargs0, _ = recorded[0]
    n = len(args0) + len(kwargs0)
    orders = list(itertools.permutations(range(n))) if n <= 5 else [tuple(range(n))]
    for order in orders:
        for args, kwargs, result in recorded:
            values = list(args) + list(kwargs.values())
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    got = fn(*copy.deepcopy([values[i] for i in order]))
            except Exception:
                break
            if not (_same(got, result) or _leading(got, result)):
                break
        else:
            return True
    return False


def _leading(got, result):
    return (isinstance(got, tuple) and isinstance(result, tuple) and 2 <= len(got) < len(result)
            and _same(got, result[:len(got)]))


@pytest.mark.parametrize("aid", course.assignments())
def test_fix_it_first_names_a_function_checked_in_the_same_notebook(aid):
    """A check's ``needs`` names a function to fix first "(its own checks say how)":
    that function has visible checks in this notebook, or its entry says how
    to fix it in a third element (a function pasted from an earlier exercise)."""
    a = course.load(aid)
    checked = set()
    for c in a.tests:
        for node in ast.walk(ast.parse(course.visible_source(c))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check":
                first = node.args[0] if node.args else None
                text = (first.value if isinstance(first, ast.Constant) else
                        first.values[0].value if isinstance(first, ast.JoinedStr)
                        and isinstance(first.values[0], ast.Constant) else "")
                checked.add(text.split(":")[0])
    loops = {"sgd_step", "momentum_step", "rmsprop_step", "adam_step", "dropout_forward",
             "l2_penalty"}  # checks named in a loop over these names: f"{name}: ..."
    checked |= loops & set(a.functions)
    found = 0
    for c in a.cells:
        if c.kind not in ("tests", "setup"):
            continue
        for node in ast.walk(ast.parse(c.source)):
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values):
                    if (isinstance(k, ast.Constant) and isinstance(v, ast.Tuple)
                            and v.elts and isinstance(v.elts[0], ast.Lambda)):
                        found += 1
                        assert len(v.elts) == 3 or k.value in checked, (aid, c.grade_id, k.value)
    assert found or aid == "dimensionality"
