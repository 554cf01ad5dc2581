"""What a call of a student's function looks like from inside a check.

In the grader, each graded function of a test cell is a ``StudentFunction``:
calling it runs the student's function in a sandbox (``sandbox.Sandbox.call``)
and hands back plain data.  Two things make the call behave as it does in
the learner's notebook, so a visible check gives the same verdict in both:

- in-place changes to the arguments come back (``copy_back``): a visible
  check that the inputs were left alone sees what the notebook sees;
- the warnings the call raised are raised again here (``relay_warnings``),
  under the filters of the check that made the call: a check that turns
  warnings into errors fails in the grader exactly when it fails in the
  notebook.

Hidden checks compare with values the grader computed from the same
arguments, so there in-place changes never come back: a call that changes
an argument it may not change (``Policy.may_change``) fails, and the
grader's copies stay as they were.  What the contract lets a function
change (the array ``numerical_gradient`` perturbs and restores, the state of
a ``Generator`` it draws from) comes back in both.
"""
import builtins
import inspect
import warnings

import numpy as np

from . import wire


class StudentFunction:
    """Stands for the student's function ``name``: calling it calls
    ``call(name, args, kwargs)``, which runs it in a sandbox."""

    def __init__(self, call, name):
        self._call = call
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        return self._call(self.__name__, args, kwargs)

    def __repr__(self):
        return f"<your function {self.__name__}>"


class Policy:
    """Which arguments of a graded function its contract lets it change.

    mutates: {function name: (parameter names, ...)}, from the reference
    module's ``MUTATES``; signatures: {function name: inspect.Signature}.
    """

    def __init__(self, mutates, signatures):
        self.mutates, self.signatures = mutates, signatures

    def may_change(self, name, args, kwargs):
        """(positions, keyword names) of the arguments the call may change."""
        allowed = set(self.mutates.get(name, ()))
        positions = {i for i, a in enumerate(args) if isinstance(a, np.random.Generator)}
        names = {k for k, a in kwargs.items() if isinstance(a, np.random.Generator) or k in allowed}
        sig = self.signatures.get(name)
        if sig is not None and allowed:
            params = list(sig.parameters)
            positions |= {i for i in range(min(len(args), len(params))) if params[i] in allowed}
        return positions, names


def copy_back(before, after):
    """Make ``before`` look as the student's code left its copy of it."""
    if isinstance(before, np.ndarray) and isinstance(after, np.ndarray):
        if before.shape == after.shape and before.flags.writeable:
            np.copyto(before, after, casting="unsafe")
    elif isinstance(before, dict) and isinstance(after, dict):
        for k in list(before):
            if k not in after:
                del before[k]
        for k, v in after.items():
            if k in before and isinstance(before[k], (np.ndarray, dict, list)) \
                    and type(before[k]) is type(v):
                copy_back(before[k], v)
            else:
                before[k] = v
    elif isinstance(before, list) and isinstance(after, list):
        if len(before) == len(after):
            for i, v in enumerate(after):
                if isinstance(before[i], (np.ndarray, dict, list)) and type(before[i]) is type(v):
                    copy_back(before[i], v)
                else:
                    before[i] = v
        else:
            before[:] = after
    elif isinstance(before, np.random.Generator) and isinstance(after, np.random.Generator):
        before.bit_generator.state = after.bit_generator.state


def unchanged(before, after):
    """Whether the student's copy ``after`` still equals what was sent."""
    if isinstance(before, np.ndarray):
        return (isinstance(after, np.ndarray) and before.shape == after.shape
                and np.array_equal(before, after, equal_nan=before.dtype.kind in "fc"))
    if isinstance(before, dict):
        return (isinstance(after, dict) and list(before) == list(after)
                and all(unchanged(before[k], after[k]) for k in before))
    if isinstance(before, (list, tuple)):
        return (isinstance(after, (list, tuple)) and len(before) == len(after)
                and all(unchanged(b, a) for b, a in zip(before, after)))
    if isinstance(before, (np.random.Generator, wire.Handle, wire.Closure)) or callable(before):
        return True  # not compared: a generator's draws are its contract, the rest stays there
    if isinstance(before, (int, float, complex, np.number)) and not isinstance(before, bool):
        return (isinstance(after, (int, float, complex, np.number)) and not isinstance(after, bool)
                and (before == after or (before != before and after != after)))
    return type(before) is type(after) and before == after


def changed_arguments(name, args, kwargs, after, may_change):
    """Names of the arguments the student's code changed though it may not."""
    positions, names = may_change
    after_args, after_kwargs = after
    found = []
    for i, (b, a) in enumerate(zip(args, after_args)):
        if i not in positions and not unchanged(b, a):
            found.append(f"argument {i + 1}")
    for k, b in kwargs.items():
        if k not in names and not unchanged(b, after_kwargs.get(k)):
            found.append(k)
    return found


def give_back(args, kwargs, after, which=None):
    """Copy the student's changes back into the arguments (``which`` = (positions,
    names) limits it to those)."""
    after_args, after_kwargs = after
    for i, (before, a) in enumerate(zip(args, after_args)):
        if which is None or i in which[0]:
            copy_back(before, a)
    for k in kwargs:
        if which is None or k in which[1]:
            copy_back(kwargs[k], after_kwargs.get(k))


def _category(name):
    """A warning class by name: builtins and NumPy's, else UserWarning."""
    cls = getattr(builtins, name, None)
    if cls is None:
        cls = getattr(np.exceptions, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, Warning) else UserWarning


def relay_warnings(recorded):
    """Raise the warnings of a student's call again, here, under the filters
    in force (a check's ``warnings.simplefilter("error")`` makes the first
    one an exception, as in the notebook; otherwise they are dropped)."""
    if not recorded:
        return
    with warnings.catch_warnings(record=True):  # keeps the filters; shows nothing
        for name, message in recorded:
            warnings.warn_explicit(message, _category(name), "<your code>", 0,
                                   registry={})


def signatures_of(module, names):
    out = {}
    for n in names:
        fn = getattr(module, n, None)
        if fn is not None:
            try:
                out[n] = inspect.signature(fn)
            except (TypeError, ValueError):
                pass
    return out
