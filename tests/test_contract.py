"""The book's contract page (book/contract.md) agrees with the reference package and the exercises.

The page is the course's one list of graded functions; the tests that need
that list read it from there (conftest.contract).  Here it is held to the
code: every function it lists exists in solutions/ with that signature, and
every function an exercise asks for is on it, so neither can drift.
"""
import ast
import importlib
import inspect

import pytest

from autograder import course
from tests.conftest import contract

NO_DEFAULT = object()


def _page_parameters(signature):
    """[(name, kind, default)] of a signature as the page writes it, e.g. `f(x, eps=1e-6)`."""
    args = ast.parse(f"def {signature}: pass").body[0].args
    positional = args.posonlyargs + args.args
    defaults = [NO_DEFAULT] * (len(positional) - len(args.defaults)) + \
        [ast.literal_eval(d) for d in args.defaults]
    params = [(a.arg, "positional", d) for a, d in zip(positional, defaults)]
    if args.vararg:
        params.append((args.vararg.arg, "*args", NO_DEFAULT))
    params += [(a.arg, "keyword", NO_DEFAULT if d is None else ast.literal_eval(d))
               for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        params.append((args.kwarg.arg, "**kwargs", NO_DEFAULT))
    return params


def _code_parameters(fn):
    """The same for a function of the reference package."""
    kinds = {inspect.Parameter.POSITIONAL_ONLY: "positional",
             inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
             inspect.Parameter.VAR_POSITIONAL: "*args",
             inspect.Parameter.KEYWORD_ONLY: "keyword",
             inspect.Parameter.VAR_KEYWORD: "**kwargs"}
    return [(p.name, kinds[p.kind], NO_DEFAULT if p.default is inspect.Parameter.empty else p.default)
            for p in inspect.signature(fn).parameters.values()]


def _same(page, code):
    """Same names, kinds and defaults (1e-6 and 1e-06 are the same float; 1 is not 1.0)."""
    return len(page) == len(code) and all(
        (n, k) == (m, j) and (d is e or (type(d) is type(e) and d == e))
        for (n, k, d), (m, j, e) in zip(page, code))


def _defines(aid, name):
    """Whether solutions/<aid>.py defines `name` (not merely imports it)."""
    fn = getattr(importlib.import_module(f"solutions.{aid}"), name, None)
    return fn is not None and fn.__module__ == f"solutions.{aid}"


def test_the_page_has_a_section_for_every_assignment():
    assert sorted(contract()) == course.assignments(), \
        "book/contract.md needs a section labelled (contract-<id>)= for every source/<id>/"


@pytest.mark.parametrize("aid", course.assignments())
def test_every_listed_function_exists_with_that_signature(aid):
    listed = contract().get(aid, {})
    assert listed, f"book/contract.md lists no function for {aid}"
    module = importlib.import_module(f"solutions.{aid}")
    wrong = []
    for name, signature in listed.items():
        if not _defines(aid, name):
            wrong.append(f"{signature}: not defined in solutions/{aid}.py")
        elif not _same(_page_parameters(signature), _code_parameters(fn := getattr(module, name))):
            wrong.append(f"the page says {signature}, solutions/{aid}.py has "
                         f"{name}{inspect.signature(fn)}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("aid", course.assignments())
def test_every_function_an_exercise_asks_for_is_on_the_page(aid):
    """Under its own chapter; a function pasted in from an earlier chapter under that chapter."""
    page = contract()
    missing = []
    for name in course.load(aid).functions:
        home = aid if _defines(aid, name) else \
            next((other for other in course.assignments() if _defines(other, name)), None)
        if name not in page.get(home, {}):
            missing.append(f"{name} (solutions/{home}.py)")
    assert not missing, f"{aid} has answer cells for functions book/contract.md does not list " \
                        f"in their chapter's section: {missing}"


def test_a_signature_that_drifts_is_caught():
    """The comparison itself: a renamed argument, a changed default or a lost one all differ."""
    fn = importlib.import_module("solutions.dcl_backprop").numerical_gradient
    assert _same(_page_parameters("numerical_gradient(f, x, eps=1e-6)"), _code_parameters(fn))
    for drifted in ("numerical_gradient(f, x, eps=1e-5)", "numerical_gradient(f, x, h=1e-6)",
                    "numerical_gradient(f, x)", "numerical_gradient(f, x, eps=1)",
                    "numerical_gradient(f, x, *, eps=1e-6)"):
        assert not _same(_page_parameters(drifted), _code_parameters(fn)), drifted
