"""Checks for the exercise notebooks.

Each test cell of an exercise is a list of ``with check("name"):`` blocks.
In your notebook a failing block stops the cell with a message that says
what is wrong and, where it can tell, why.  The grader runs the very same
blocks (plus hidden ones) in its own process against your functions.

Tolerances: a correct float64 implementation agrees with another to about
1e-13 relative, whatever its order of operations; the bugs these checks look
for are off by 1e-3 or far more.  ``RTOL = 1e-6`` sits safely between.
Gradients compared with central differences (error ~1e-9 for smooth
functions at eps = 1e-6) use ``GRAD_RTOL = 1e-5``.
"""
import contextlib

import numpy as np

RTOL = 1e-6
GRAD_RTOL = 1e-5

_results = None   # the grader collects results here; None in a notebook
_hidden = False   # set by the grader inside hidden tests


class CheckFailed(AssertionError):
    """A check found a wrong result; the message says which and why."""


@contextlib.contextmanager
def check(name, weight=1.0):
    """One named check; ``name`` starts with the graded function's name."""
    if _results is None:
        try:
            yield
        except CheckFailed as exc:
            raise CheckFailed(f"✗ {name}: {exc}") from None
        except NotImplementedError:
            raise CheckFailed(f"✗ {name}: not implemented yet") from None
        except Exception:
            print(f"✗ {name}: your code raised an error (traceback below)")
            raise
        print(f"✓ {name}")
        return
    record = {"name": name, "weight": float(weight), "hidden": _hidden}
    try:
        yield
    except Exception as exc:  # a failure of this check only: grading goes on
        record.update(passed=False, message=_explain(exc))
    else:
        record.update(passed=True, message="")
    _results.append(record)


def _explain(exc):
    if isinstance(exc, CheckFailed):
        return str(exc)
    if isinstance(exc, NotImplementedError) or "NotImplementedError" in str(exc)[-200:]:
        return "not implemented yet"
    return f"your code raised an error:\n{exc}"


def fail(message):
    raise CheckFailed(message)


# ----------------------------------------------------------------------------
# Comparing results


def rel_error(got, want):
    """Largest elementwise |got - want| / max(1e-8, |got| + |want|)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want) / np.maximum(1e-8, np.abs(got) + np.abs(want)),
                        initial=0.0))


def _close(got, want, rtol):
    if got.shape != want.shape:
        return False
    fin_got, fin_want = np.isfinite(got), np.isfinite(want)
    if (fin_got != fin_want).any():
        return False
    if not np.array_equal(got[~fin_got], want[~fin_want], equal_nan=True):
        return False
    return rel_error(got[fin_got], want[fin_want]) <= rtol


def as_array(value, what):
    """``value`` as a float64 array, or a failure that names the problem."""
    if value is None:
        fail(f"{what} is None: did you forget a `return`?")
    if isinstance(value, tuple) and len(value) and all(isinstance(v, np.ndarray) for v in value):
        fail(f"{what} is a tuple of {len(value)} arrays, expected one array")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        fail(f"{what} should be a NumPy array, got {type(value).__name__}")
    return arr


def assert_close(got, want, what, rtol=RTOL, likely=None):
    """Fail with a diagnosis unless ``got`` matches ``want``.

    likely: {"cause in words": array a common mistake would give}; when
    ``got`` matches one of them the message names that cause.
    """
    got = as_array(got, what)
    want = np.asarray(want, dtype=np.float64)
    if _close(got, want, rtol):
        return
    likely = dict(likely or {})
    if want.ndim == 2 and want.shape[0] != want.shape[1]:
        likely.setdefault("it is transposed", want.T)
    likely.setdefault("its sign is flipped", -want)
    for cause, wrong in likely.items():
        wrong = np.asarray(wrong, dtype=np.float64)
        if wrong.shape == got.shape and _close(got, wrong, rtol):
            fail(f"{what} is wrong: {cause}.")
    if got.shape != want.shape:
        fail(f"{what} has shape {got.shape}, expected {want.shape}.")
    if not np.isfinite(got).all() and np.isfinite(want).all():
        fail(f"{what} contains nan or inf where the true value is finite: "
             "an overflow? Use the numerically stable form.")
    err = rel_error(got, want) if np.isfinite(got).all() else float("inf")
    where = np.unravel_index(np.argmax(np.abs(got - want) /
                                       np.maximum(1e-8, np.abs(got) + np.abs(want))),
                             want.shape) if want.ndim and np.isfinite(got).all() else ()
    at = f" (worst at index {tuple(int(i) for i in where)})" if where else ""
    fail(f"{what} is wrong: relative error {err:.2g} > {rtol:g}{at}.")


def assert_scalar(got, want, what, rtol=RTOL):
    """Like assert_close for a scalar; also insists on a Python/NumPy number."""
    if isinstance(got, np.ndarray) and got.size != 1:
        fail(f"{what} should be a number, got an array of shape {got.shape}")
    assert_close(np.asarray(got, dtype=np.float64).reshape(()), want, what, rtol)


def assert_unchanged(before, after, what):
    """Inputs must not be modified by the functions of this course."""
    if isinstance(before, dict):
        for k in before:
            assert_unchanged(before[k], after[k], f"{what}[{k!r}]")
        return
    if not np.array_equal(before, after):
        fail(f"{what} was modified in place; functions must not change their inputs.")


def snapshot(value):
    """A deep copy of arrays (and dicts of arrays) to compare with later."""
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    return np.array(value, dtype=np.float64, copy=True)


# ----------------------------------------------------------------------------
# Gradients by finite differences, for checking analytic gradients


def finite_diff(loss, x, eps=1e-6):
    """dloss/dx by central differences; loss takes a copy of x as argument.

    (This is the checks' own tool: it perturbs a copy, unlike the
    ``numerical_gradient`` you write, which perturbs ``x`` in place.)
    """
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1)
    grad = np.empty(flat.size)
    for j in range(flat.size):
        step = np.zeros(flat.size)
        step[j] = eps
        grad[j] = (loss((flat + step).reshape(x.shape))
                   - loss((flat - step).reshape(x.shape))) / (2 * eps)
    return grad.reshape(x.shape)


def closure(expr, **env):
    """A function of no arguments evaluating ``expr`` over ``env``'s arrays.

    ``closure("np.sum(A * x**3)", x=x, A=A)`` reads ``x`` each time it is
    called, so changes made to ``x`` in place are seen.
    """
    if _results is not None:  # in the grader it is rebuilt in your process
        from autograder.wire import Closure
        return Closure(expr, env)
    code = compile(expr, "<check>", "eval")
    scope = {"np": np, **env}
    return lambda: eval(code, scope)


def unpack(value, names, what):
    """``value`` as a tuple of ``len(names)`` results, or a clear failure."""
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        got = (f"{len(value)} values" if isinstance(value, (tuple, list))
               else type(value).__name__)
        fail(f"{what} should return {len(names)} values ({', '.join(names)}), got {got}")
    return tuple(value)


def assert_dict_close(got, want, what, rtol=RTOL):
    """Every array of the dict ``want`` matched by ``got`` under the same key."""
    if not isinstance(got, dict):
        fail(f"{what} should be a dict with keys {sorted(want)}, got {type(got).__name__}")
    missing = sorted(set(want) - set(got))
    if missing:
        fail(f"{what} lacks the keys {missing}")
    for k in want:
        assert_close(got[k], want[k], f"{what}[{k!r}]", rtol)
