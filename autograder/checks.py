"""Checks for the exercise notebooks.

Each test cell of an exercise is a list of ``with check("name"):`` blocks and
ends with ``report_checks()``.  Every check of a cell runs: each prints ✓, or
✗ with a message that says what is wrong and, where it can tell, why; the
cell fails at its end if any check failed.  The grader runs the very same
blocks (plus hidden ones) in its own process against your functions, so a
check passes here exactly when it passes in the grader.

The values the checks compare with were computed by the reference solutions
when the notebook was made; the cell after this one holds them, and a test
cell reads its own with ``want = expected("its name")``.

Tolerances: a correct float64 implementation agrees with another to about
1e-13 relative, whatever its order of operations; the bugs these checks look
for are off by 1e-3 or far more.  ``RTOL = 1e-6`` sits safely between.
Gradients compared with central differences (error ~1e-9 for smooth
functions at eps = 1e-6) use ``GRAD_RTOL = 1e-5``.
"""
import base64
import builtins
import contextlib
import json
import traceback
import types
import zlib

import numpy as np

RTOL = 1e-6
GRAD_RTOL = 1e-5

_results = None   # the grader collects results here; None in a notebook
_hidden = False   # set by the grader inside hidden tests
_cell = []        # in a notebook: (name, passed, untouched) of the checks of the running cell
_expects_error = False  # the running check asked for an exception (assert_raises)


class CheckFailed(AssertionError):
    """A check found a wrong result; the message says which and why.

    diagnosis: what differs ("shape", "factor", "named", ...: the values of
    ``autograder.model.Diagnosis``); cause: for "named", the course's words
    for the mistake.  The grader records both, so no report parses the
    message.
    """

    def __init__(self, message, diagnosis="other", cause=""):
        super().__init__(message)
        self.diagnosis, self.cause = diagnosis, cause


class ChecksFailed(AssertionError):
    """Raised at the end of a test cell in which a check failed."""

    def _render_traceback_(self):  # IPython shows this instead of a traceback
        return [f"\033[31m{self}\033[0m"]


@contextlib.contextmanager
def check(name, weight=1.0, needs=None, inputs=None):
    """One named check; ``name`` starts with the graded function's name.

    needs: {"function": (call, expected)}: functions of yours this check
    relies on (a backward pass needs the cache of your forward pass); when
    the check fails, each is called (``call()``) and compared with
    ``expected``, and a wrong one is named: "fix it first (its own checks
    say how)".  A function with no checks in this notebook (one pasted from
    an earlier exercise) says how in a third entry: (call, expected, how).
    inputs: {"x": x, ...}: the arrays (or dicts of arrays) the check passes
    to your functions.  They are put back as they were when the check ends,
    so a change made in place costs this check only; the failure says so,
    and the functions in ``needs`` are tried on the original values.
    """
    global _expects_error
    _expects_error = False
    needed = failure = None
    untouched, kept = False, {k: snapshot(v) for k, v in (inputs or {}).items()}
    try:
        yield
    except Exception as exc:  # a failure of this check only: the other checks still run
        failure, passed, message, untouched = exc, False, _explain(exc), _not_implemented(exc)
        changed = _restore(inputs, kept)
        if changed and "in place" not in message:
            message = (f"your code changed {', '.join(changed)} in place (functions must not "
                       f"change their inputs; work on a copy), and then: {message}")
        elif needs:
            needed = _prerequisite(needs)
            message = _needs_message(*needed) if needed else message
            _restore(inputs, kept)  # what the probes changed
    else:
        passed, message = True, ""
        _restore(inputs, kept)
    if _results is not None:
        _results.append({"name": name, "weight": float(weight), "hidden": _hidden,
                         "outcome": _outcome(failure, message, needed),
                         "expects_error": _expects_error})
        return
    _cell.append((name, passed, untouched))
    if passed:
        print(f"✓ {name}")
    else:
        print(f"✗ {name}:\n    " + message.replace("\n", "\n    "))


def _restore(inputs, kept):
    """Put the arrays of ``inputs`` back to ``kept`` in place; the names of those that changed."""
    changed = []
    for k, before in kept.items():
        now = inputs[k]
        pairs = ([(now, before)] if not isinstance(before, dict)
                 else [(now.get(j) if isinstance(now, dict) else None, b) for j, b in before.items()])
        if isinstance(before, dict) and isinstance(now, dict) and set(now) != set(before):
            for j in set(now) - set(before):
                del now[j]
            for j in set(before) - set(now):
                now[j] = before[j].copy()
            changed.append(k)
        for arr, b in pairs:
            if isinstance(arr, np.ndarray) and arr.shape == b.shape and not np.array_equal(
                    arr, b, equal_nan=True):
                np.copyto(arr, b, casting="unsafe")
                if k not in changed:
                    changed.append(k)
    return changed


def report_checks(optional=False):
    """End of a test cell: fail the cell if one of its checks failed.

    optional: the cell of an optional part; left untouched (every check met a
    stub that is not implemented yet) it is reported, not failed, so that
    Run All goes on past it.
    """
    if _results is not None:
        return
    done = list(_cell)
    _cell.clear()
    if optional and done and all(untouched for _, _, untouched in done):
        print("This optional part is not attempted (its functions are still the stubs): "
              "it costs nothing. Write them for extra credit.")
        return
    failed = [n for n, ok, _ in done if not ok]
    if failed:
        raise ChecksFailed(f"{len(failed)} of {len(done)} checks failed: "
                           + "; ".join(failed[:6]) + (" ..." if len(failed) > 6 else ""))
    if done:
        print(f"All {len(done)} checks passed.")


def _new_cell(*_):
    _cell.clear()


try:  # in a notebook: each cell starts with an empty list of results
    _ip = get_ipython()  # noqa: F821 - defined in IPython only
    if not any(getattr(f, "__name__", "") == "_new_cell"
               for f in _ip.events.callbacks["pre_run_cell"]):
        _ip.events.register("pre_run_cell", _new_cell)
except (NameError, AttributeError, KeyError):
    pass


def _not_implemented(exc):
    """Whether ``exc`` is a stub's NotImplementedError (here or in the grader's sandbox)."""
    return (isinstance(exc, NotImplementedError)
            or getattr(exc, "kind", None) == "NotImplementedError")


def _explain(exc):
    """The message of a failed check, for the exception it ended with."""
    if isinstance(exc, CheckFailed):
        return str(exc)
    kind = getattr(exc, "kind", None)  # an error of your code, raised in the grader's sandbox
    if _not_implemented(exc):
        return "not implemented yet"
    if type(exc).__name__ == "StudentCrash":
        return f"your code could not finish: {exc}"
    if kind is not None:
        return f"your code raised {_raised_words(kind)}:\n{exc}".rstrip()
    # In the grader the traceback would show the grader's frames, not yours.
    frames = _your_frames(exc) if _results is None else ""
    return f"your code raised {_raised_words(type(exc).__name__)}: {exc}{frames}"


def _raised_words(name):
    """How a message names the class of an exception the student's code raised:
    a standard one by its name, one of the student's own quoted as theirs."""
    if name in STANDARD_EXCEPTIONS:
        return name
    return f"an exception of its own class {name[:40]!r}"


# Exception classes named as they are, in a message and in the grader's records
# (``autograder.model.exception_label``): Python's own and NumPy's.
STANDARD_EXCEPTIONS = frozenset(
    n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)
) | {"LinAlgError", "AxisError", "ComplexWarning", "TooHardError"}


def _outcome(exc, message, needed):
    """The grader's record of how a check ended (``autograder.model.Outcome``)."""
    from autograder import model
    if exc is None:
        return model.PASSED
    if needed:
        return model.Outcome(model.Kind.DEPENDENCY, message, needs=needed[0])
    if isinstance(exc, CheckFailed):
        return model.Outcome(model.Kind.WRONG, message, model.Diagnosis(exc.diagnosis),
                             exc.cause)
    kind = getattr(exc, "kind", None)
    if isinstance(exc, NotImplementedError) or kind == "NotImplementedError":
        return model.Outcome(model.Kind.NOT_IMPLEMENTED, message)
    if type(exc).__name__ == "StudentCrash":
        return model.Outcome(model.Kind.TIMED_OUT if getattr(exc, "timed_out", False)
                             else model.Kind.CRASHED, message)
    return model.Outcome(model.Kind.RAISED, message,
                         exception=model.exception_label(kind or type(exc).__name__))


def _your_frames(exc, limit=6):
    """The lines of a traceback that are in your code (not in this cell or the checks)."""
    try:
        frames = traceback.extract_tb(exc.__traceback__)
        ours = {frames[0].filename, _explain.__code__.co_filename} if frames else set()
        yours = [f for f in frames if f.filename not in ours]
        if not yours:
            return ""
        return "\n" + "".join(traceback.format_list(yours[-limit:])).rstrip()
    except Exception:
        return ""


def _prerequisite(needs):
    """(name, how to fix it or "") of the first function in ``needs`` that gives
    wrong values, or None."""
    for fn, (call, want, *how) in needs.items():
        try:
            got = call()
            wants = want if isinstance(want, tuple) else (want,)
            gots = got if isinstance(want, tuple) else (got,)
            ok = len(gots) == len(wants) and all(
                _close(as_array(g, fn), np.asarray(w, dtype=np.float64), RTOL)
                for g, w in zip(gots, wants))
        except Exception:
            ok = False
        if not ok:
            return fn, (how[0] if how else "")
    return None


def _needs_message(fn, how=""):
    return (f"this check uses your {fn}, which gives wrong values here: "
            f"fix {fn} first ({how or 'its own checks say how'})")


def missing_function(exc):
    """What a demo says when it met a stub (``exc``, a NotImplementedError): the
    name of your function to write first, the one whose stub raised it."""
    tb, name = exc.__traceback__, None
    while tb is not None:
        name, tb = tb.tb_frame.f_code.co_name, tb.tb_next
    return (f"This cell runs your {name}, which is not written yet: write it, run its cell "
            "(and its checks), then run this cell again.")


def fail(message, diagnosis="other", cause=""):
    """Fail the check with ``message`` (see ``CheckFailed`` for the rest)."""
    raise CheckFailed(message, diagnosis, cause)


# ----------------------------------------------------------------------------
# The expected values


def load_expected(text):
    """The values of ``EXPECTED``: base64 of zlib of JSON, arrays as raw float bytes."""
    return _decode(json.loads(zlib.decompress(base64.b64decode("".join(text.split())))))


def _decode(d):
    if isinstance(d, list):
        return [_decode(v) for v in d]
    if not isinstance(d, dict):
        return d
    if "__nd__" in d:
        raw = base64.b64decode(d["__nd__"])
        return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()
    if "__tuple__" in d:
        return tuple(_decode(v) for v in d["__tuple__"])
    if "__float__" in d:
        return float(d["__float__"])
    if "__dict__" in d:
        return {_decode(k): _decode(v) for k, v in d["__dict__"]}
    raise ValueError("malformed expected values")


class Expected(types.SimpleNamespace):
    """The expected values of one test cell: ``want.z``, ``want.mistakes``, ..."""

    def __getattr__(self, name):
        raise AttributeError(f"no expected value {name!r}: regenerate the notebook")


def expected_from(values):
    """The function ``expected(cell)`` over ``values`` ({test cell: {name: value}});
    each call gives fresh copies, so a check can never change the originals."""
    def expected(cell):
        return Expected(**_decode(_encode_plain(values[cell])))
    return expected


def _encode_plain(v):
    """A deep copy in the encoded form (so a check can never change EXPECTED)."""
    if isinstance(v, np.ndarray):
        return {"__nd__": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode(),
                "dtype": v.dtype.str, "shape": list(v.shape)}
    if isinstance(v, dict):
        return {"__dict__": [[_encode_plain(k), _encode_plain(x)] for k, x in v.items()]}
    if isinstance(v, tuple):
        return {"__tuple__": [_encode_plain(x) for x in v]}
    if isinstance(v, list):
        return [_encode_plain(x) for x in v]
    if isinstance(v, float) and v - v != 0:
        return {"__float__": repr(v)}
    return v


# ----------------------------------------------------------------------------
# Comparing results


def _close(got, want, rtol):
    if got.shape != want.shape:
        return False
    fin_got, fin_want = np.isfinite(got), np.isfinite(want)
    if (fin_got != fin_want).any():
        return False
    if not np.array_equal(got[~fin_got], want[~fin_want], equal_nan=True):
        return False
    g, w = got[fin_got], want[fin_want]
    return bool(np.all(np.abs(g - w) <= rtol * np.maximum(1e-8, np.abs(g) + np.abs(w))))


def as_array(value, what):
    """``value`` as a float64 array, or a failure that names the problem."""
    if value is None:
        fail(f"{what} is None: did you forget a `return`?", "type")
    if isinstance(value, tuple) and len(value) and all(isinstance(v, np.ndarray) for v in value):
        fail(f"{what} is a tuple of {len(value)} arrays, expected one array", "type")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        fail(f"{what} should be a NumPy array of numbers, got {_kind(value)}", "type")
    return arr


def _kind(value):
    name = type(value).__name__
    return "a string" if isinstance(value, str) else f"a {name}"


def _factor_words(c, sizes):
    """'it is 4 times too large (a factor of N = 4)' and the like, for got = c * want."""
    for label, n in (sizes or {}).items():
        if n > 1 and abs(c - n) <= 1e-6 * n:
            return f"it is {n:g} times too large (a factor of {label} = {n:g})"
        if n > 1 and abs(c * n - 1) <= 1e-6:
            return f"it is {n:g} times too small (divided by {label} = {n:g})"
    if c > 1:
        return f"it is {c:.4g} times too large"
    return f"it is {1 / c:.4g} times too small"


def _describe(got, want, rtol, sizes):
    """(diagnosis, words): why ``got`` is not ``want`` (same shapes, both finite)."""
    g, w = got.ravel(), want.ravel()
    if not np.any(g):
        return "zeros", "it is all zeros"
    ww = float(w @ w)
    if ww > 0:
        c = float(g @ w) / ww  # the best factor: got = c * want?
        if abs(c) > 1e-12 and _close(got, c * want, rtol):
            if abs(c + 1) <= rtol:
                return "sign", "its sign is flipped"
            if c < 0:
                return "sign", "its sign is flipped and " + _factor_words(-c, sizes)
            return "factor", _factor_words(c, sizes)
    if want.ndim == 2 and want.shape[0] == want.shape[1] and want.shape[0] > 1 \
            and _close(got, want.T, rtol):
        return "transposed", "it is transposed"
    diff = np.abs(got - want)
    i = np.unravel_index(int(np.argmax(diff)), want.shape)
    at = f" at index {tuple(int(k) for k in i)}" if want.ndim else ""
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    return "difference", (f"the largest difference is {float(diff[i]):.3g}{at} (got {float(got[i]):.6g}, "
            f"expected {float(want[i]):.6g}), where the expected values are up to "
            f"{scale:.3g} in size")


def assert_close(got, want, what, rtol=RTOL, likely=None, sizes=None):
    """Fail with a diagnosis unless ``got`` matches ``want``.

    likely: {"cause in words": array a common mistake would give}; when
    ``got`` matches one of them the message names that cause.
    sizes: {"N": 4, ...}: sizes whose factor the message should name.
    """
    got = as_array(got, what)
    want = np.asarray(want, dtype=np.float64)
    if _close(got, want, rtol):
        return
    for cause, wrong in (likely or {}).items():
        wrong = np.asarray(wrong, dtype=np.float64)
        if wrong.shape == got.shape and _close(got, wrong, rtol):
            fail(f"{what} is wrong: {cause}.", "named", cause)
    if got.shape != want.shape:
        if want.ndim == 2 and got.shape == want.T.shape and _close(got, want.T, rtol):
            fail(f"{what} is transposed: it has shape {got.shape}, expected {want.shape}.",
                 "transposed")
        fail(f"{what} has shape {got.shape}, expected {want.shape}.", "shape")
    if not np.isfinite(got).all() and np.isfinite(want).all():
        fail(f"{what} contains nan or inf where the true value is finite: "
             "an overflow? Use the numerically stable form.", "nonfinite")
    if not np.isfinite(want).all():
        fail(f"{what} is wrong: expected {want!r}, got {np.array2string(got, threshold=20)}.",
             "difference")
    diagnosis, words = _describe(got, want, rtol, sizes)
    fail(f"{what} is wrong: {words}.", diagnosis)


def assert_scalar(got, want, what, rtol=RTOL):
    """Like assert_close for a scalar; also insists on a Python/NumPy number."""
    if isinstance(got, np.ndarray) and got.size != 1:
        fail(f"{what} should be a number, got an array of shape {got.shape}", "type")
    assert_close(as_array(got, what).reshape(()), want, what, rtol)


def assert_raises(kind, what, call):
    """``call()`` must raise the exception class ``kind`` (a ValueError, say)."""
    global _expects_error
    _expects_error = True  # a function that computes nothing may pass this too
    try:
        call()
    except Exception as exc:
        raised = getattr(exc, "kind", None) or type(exc).__name__
        if raised == "NotImplementedError":
            raise
        if raised != kind.__name__ and not isinstance(exc, kind):
            fail(f"{what} should raise {kind.__name__}, but raised {_raised_words(raised)}",
                 "raises")
        return
    fail(f"{what} should raise {kind.__name__}, but returned normally", "raises")


def assert_unchanged(before, after, what):
    """Inputs must not be modified by the functions of this course."""
    if isinstance(before, dict):
        if not isinstance(after, dict) or set(after) != set(before):
            fail(f"{what} was modified in place (its keys changed); functions must not "
                 "change their inputs.")
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
    ``numerical_gradient`` of Exercise 1, which perturbs ``x`` in place.)
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
        fail(f"{what} should return {len(names)} values ({', '.join(names)}), got {got}", "count")
    return tuple(value)


def assert_dict_close(got, want, what, rtol=RTOL, sizes=None):
    """Every array of the dict ``want`` matched by ``got`` under the same key."""
    if not isinstance(got, dict):
        fail(f"{what} should be a dict with keys {sorted(want)}, got {type(got).__name__}", "type")
    missing = sorted(set(want) - set(got))
    if missing:
        fail(f"{what} lacks the keys {missing}", "type")
    for k in want:
        assert_close(got[k], want[k], f"{what}[{k!r}]", rtol, sizes=sizes)


# ----------------------------------------------------------------------------
# Goodness of fit, for checking random functions by their law, not a few moments


def kolmogorov_sf(lam):
    """P(K > lam) for Kolmogorov's law K, the limit of sqrt(n) sup_t |F_n(t) - F(t)|
    for a sample of n from a continuous F:

        P(K > lam) = 2 sum_k>=1 (-1)^(k-1) exp(-2 k^2 lam^2)              (lam >= 1),
                   = 1 - sqrt(2 pi)/lam sum_k>=1 exp(-(2k-1)^2 pi^2 / (8 lam^2))   (lam < 1);

    the two series are one function; each converges fast on its side.
    """
    lam = float(lam)
    if lam <= 0:
        return 1.0
    k = np.arange(1, 101)
    if lam >= 1:
        return float(min(1.0, 2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * k ** 2 * lam ** 2))))
    s = np.sum(np.exp(-(2 * k - 1) ** 2 * np.pi ** 2 / (8 * lam ** 2)))
    return float(max(0.0, 1 - np.sqrt(2 * np.pi) / lam * s))


def ks_one_sample(x, cdf):
    """(statistic, p): the Kolmogorov-Smirnov test of the sample ``x`` against the
    continuous CDF ``cdf`` (a vectorised function).  statistic = sqrt(n) sup_t
    |F_n(t) - F(t)|; p = kolmogorov_sf(statistic), the chance of a statistic as
    large from a sample that does follow ``cdf`` (asymptotic: good for n >= 100)."""
    x = np.sort(np.asarray(x, dtype=np.float64).ravel())
    n = x.size
    f = cdf(x)
    i = np.arange(1, n + 1)
    # the empirical CDF jumps at every x_i: compare F with both sides of each jump
    lam = float(np.sqrt(n) * max(np.max(i / n - f), np.max(f - (i - 1) / n)))
    return lam, kolmogorov_sf(lam)


def ks_two_sample(a, b):
    """(statistic, p): the two-sample Kolmogorov-Smirnov test that ``a`` and ``b``
    come from one continuous law.  statistic = sqrt(n m / (n + m)) sup_t
    |F_a(t) - F_b(t)|; p = kolmogorov_sf(statistic) (asymptotic)."""
    a = np.sort(np.asarray(a, dtype=np.float64).ravel())
    b = np.sort(np.asarray(b, dtype=np.float64).ravel())
    n, m = a.size, b.size
    t = np.concatenate([a, b])
    gap = np.max(np.abs(np.searchsorted(a, t, side="right") / n
                        - np.searchsorted(b, t, side="right") / m))
    lam = float(np.sqrt(n * m / (n + m)) * gap)
    return lam, kolmogorov_sf(lam)


def sphere_cos_cdf(t, D):
    """P(c <= t) for c = cos of the angle between two independent directions
    uniform on the sphere in R^D (D >= 2), which is also the law of one
    coordinate of one such direction: density proportional to
    (1 - t^2)^((D - 3) / 2) on [-1, 1].  With t = sin(phi) the CDF is
    I_(D-2)(phi) / I_(D-2)(pi/2), I_k(phi) = integral from -pi/2 to phi of
    cos^k, and I_k = cos^(k-1) sin / k + (k-1)/k I_(k-2) (integration by parts)."""
    phi = np.arcsin(np.clip(np.asarray(t, dtype=np.float64), -1.0, 1.0))
    c, s = np.cos(phi), np.sin(phi)
    k = D - 2
    low, low_end = (phi + np.pi / 2, np.pi) if k % 2 == 0 else (s + 1.0, 2.0)
    for j in range(2 + k % 2, k + 1, 2):  # I_j from I_(j-2); I_j(pi/2) likewise
        low = c ** (j - 1) * s / j + (j - 1) / j * low
        low_end = (j - 1) / j * low_end
    return np.clip(low / low_end, 0.0, 1.0)
