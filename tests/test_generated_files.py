"""Committed generated files must equal a fresh generation."""
import ast
import json

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
