"""Tests of solutions.lstm (chapter 3: LSTM with peepholes, and the GRU).

Oracles: central differences through single steps and whole sequences, a
scalar per-unit reference of the peephole LSTM and of the GRU written here
with explicit loops, an independent no-peephole LSTM in PyTorch's gate
layout (i, f, g, o), a closed form for the "gradient highway" case, and a
loop of the step functions for the fast sequence code.

Tolerances for gradient checks: with eps = 1e-6 the central difference has
truncation error O(eps^2) ~ 1e-12 and rounding error ~ 1e-16 * |J| / eps
~ 1e-10, against gradient entries as small as ~3e-4 here, so the relative
error of a correct gradient reaches ~1e-6 on its smallest entries (it is
1e-8 on typical ones); GRAD_TOL = 1e-5 keeps a margin above that, while a
missing or wrong term (e.g. a dropped peephole path) gives 1e-3 or more.
"""
import copy
import math

import numpy as np
import pytest

from solutions import lstm as L
from solutions.dcl_backprop import numerical_gradient, relative_error
from tests.solutions.helpers import assert_same

# Any overflow / invalid-value warning is a numerical-stability bug.
pytestmark = pytest.mark.filterwarnings("error")

T, N, D, H = 5, 3, 4, 6
LSTM_KEYS = ("W_z", "W_i", "W_f", "W_o", "R_z", "R_i", "R_f", "R_o",
             "p_i", "p_f", "p_o", "b_z", "b_i", "b_f", "b_o")
GRU_KEYS = ("W_r", "W_u", "W_n", "R_r", "R_u", "R_n", "b_r", "b_u", "b_n")
GRAD_TOL = 1e-5


def make_lstm(seed=0, T=T, N=N, scale=0.5):
    """Random LSTM problem: non-zero peepholes, biases, y0 and c0."""
    rng = np.random.default_rng(seed)
    params = {}
    for g in "zifo":
        params["W_" + g] = scale * rng.standard_normal((H, D))
        params["R_" + g] = scale * rng.standard_normal((H, H))
        params["b_" + g] = scale * rng.standard_normal(H)
    for g in "ifo":
        params["p_" + g] = scale * rng.standard_normal(H)
    x = rng.standard_normal((T, N, D))
    y0 = 0.5 * rng.standard_normal((N, H))
    c0 = rng.standard_normal((N, H))
    return params, x, y0, c0


def make_gru(seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    params = {}
    for g in "run":
        params["W_" + g] = scale * rng.standard_normal((H, D))
        params["R_" + g] = scale * rng.standard_normal((H, H))
        params["b_" + g] = scale * rng.standard_normal(H)
    x_t = rng.standard_normal((N, D))
    h_prev = 0.5 * rng.standard_normal((N, H))
    return params, x_t, h_prev


def logistic(v):
    return 1.0 / (1.0 + math.exp(-v))


# ----------------------------------------------------------------------------
# Independent references


def ref_lstm_step(x_t, y_prev, c_prev, P):
    """One peephole-LSTM step, one example and one unit at a time."""
    n_ex, n_units = y_prev.shape
    y_t = np.zeros((n_ex, n_units))
    c_t = np.zeros((n_ex, n_units))

    def affine(g, n, k):
        return (sum(P["W_" + g][k, d] * x_t[n, d] for d in range(x_t.shape[1]))
                + sum(P["R_" + g][k, j] * y_prev[n, j] for j in range(n_units))
                + P["b_" + g][k])

    for n in range(n_ex):
        for k in range(n_units):
            z = math.tanh(affine("z", n, k))
            i = logistic(affine("i", n, k) + P["p_i"][k] * c_prev[n, k])
            f = logistic(affine("f", n, k) + P["p_f"][k] * c_prev[n, k])
            c_t[n, k] = z * i + c_prev[n, k] * f
            o = logistic(affine("o", n, k) + P["p_o"][k] * c_t[n, k])
            y_t[n, k] = o * math.tanh(c_t[n, k])
    return y_t, c_t


def torch_layout_lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):
    """No-peephole LSTM in PyTorch's layout: gate rows [i; f; g; o], two biases."""
    h, c = h0, c0
    hs = []
    for x_t in x:
        gates = x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh
        i, f, g, o = np.split(gates, 4, axis=1)
        i, f, o = (1.0 / (1.0 + np.exp(-v)) for v in (i, f, o))
        c = f * c + i * np.tanh(g)
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs)


def ref_gru_step(x_t, h_prev, P):
    """One GRU step, one example at a time, column-vector math."""
    h_t = np.zeros_like(h_prev)
    for n in range(x_t.shape[0]):
        x, h = x_t[n], h_prev[n]
        r = 1.0 / (1.0 + np.exp(-(P["W_r"].dot(x) + P["R_r"].dot(h) + P["b_r"])))
        u = 1.0 / (1.0 + np.exp(-(P["W_u"].dot(x) + P["R_u"].dot(h) + P["b_u"])))
        cand = np.tanh(P["W_n"].dot(x) + r * P["R_n"].dot(h) + P["b_n"])
        h_t[n] = u * h + (1.0 - u) * cand
    return h_t


def step_backward_loop(dy, caches):
    """BPTT as a plain loop of lstm_step_backward (the module's convention)."""
    n_steps = len(caches)
    dy_prev = np.zeros_like(dy[0])
    dc_prev = np.zeros_like(dy[0])
    dx, total = [None] * n_steps, {}
    for t in reversed(range(n_steps)):
        dx[t], dy_prev, dc_prev, g = L.lstm_step_backward(dy[t] + dy_prev, dc_prev, caches[t])
        for k, v in g.items():
            total[k] = total.get(k, 0.0) + v
    return np.stack(dx), dy_prev, dc_prev, total


# ----------------------------------------------------------------------------
# Forward


def test_step_forward_matches_scalar_reference_with_peepholes():
    params, x, y0, c0 = make_lstm(seed=1)
    y_t, c_t, _ = L.lstm_step_forward(x[0], y0, c0, params)
    y_ref, c_ref = ref_lstm_step(x[0], y0, c0, params)
    np.testing.assert_allclose(y_t, y_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_t, c_ref, rtol=1e-12, atol=1e-14)
    assert y_t.dtype == c_t.dtype == np.float64


def test_sequence_forward_equals_loop_of_step_forward():
    params, x, y0, c0 = make_lstm(seed=2)
    y, _ = L.lstm_forward(x, y0, c0, params)
    assert y.shape == (T, N, H) and y.dtype == np.float64
    y_prev, c_prev = y0, c0
    for t in range(T):
        y_prev, c_prev, _ = L.lstm_step_forward(x[t], y_prev, c_prev, params)
        np.testing.assert_allclose(y[t], y_prev, rtol=1e-12, atol=1e-14)


def test_without_peepholes_matches_pytorch_gate_layout():
    params, x, y0, c0 = make_lstm(seed=3)
    for g in "ifo":
        params["p_" + g] = np.zeros(H)
    rng = np.random.default_rng(30)
    # PyTorch keeps two biases per gate; only their sum matters.
    bias_ih = rng.standard_normal(4 * H)
    order = "ifzo"  # PyTorch's i, f, g, o with its g as our z
    weight_ih = np.concatenate([params["W_" + g] for g in order])
    weight_hh = np.concatenate([params["R_" + g] for g in order])
    bias_hh = np.concatenate([params["b_" + g] for g in order]) - bias_ih
    expected = torch_layout_lstm(x, y0, c0, weight_ih, weight_hh, bias_ih, bias_hh)
    y, _ = L.lstm_forward(x, y0, c0, params)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-14)


def test_peepholes_change_the_output():
    # Guards the test above: peepholes must not be silently ignored.
    params, x, y0, c0 = make_lstm(seed=3)
    y_with, _ = L.lstm_forward(x, y0, c0, params)
    for g in "ifo":
        params["p_" + g] = np.zeros(H)
    y_without, _ = L.lstm_forward(x, y0, c0, params)
    assert np.abs(y_with - y_without).max() > 1e-2


def test_saturated_gates_stay_finite():
    # Pre-activations of several hundred: the stable sigmoid must not warn.
    params, x, y0, c0 = make_lstm(seed=4, scale=200.0)
    y, cache = L.lstm_forward(x, y0, c0, params)
    dx, dy0, dc0, grads = L.lstm_backward(np.ones_like(y), cache)
    assert np.all(np.isfinite(y)) and np.all(np.abs(y) <= 1.0)
    for v in (dx, dy0, dc0, *grads.values()):
        assert np.all(np.isfinite(v))
    # The step functions and the cell Jacobian promise the same.
    y_t, c_t, step_cache = L.lstm_step_forward(x[0], y0, c0, params)
    step_grads = L.lstm_step_backward(np.ones_like(y_t), np.ones_like(c_t), step_cache)
    jac = L.cell_jacobian_diag(x[0], y0, c0, params)
    assert np.all(np.abs(y_t) <= 1.0) and np.all(np.isfinite(c_t))
    for v in (*step_grads[:3], *step_grads[3].values(), jac):
        assert np.all(np.isfinite(v))


# ----------------------------------------------------------------------------
# Backward: whole sequence


def sequence_loss(params, x, y0, c0, dy_probe):
    y, _ = L.lstm_forward(x, y0, c0, params)
    return float(np.sum(dy_probe * y))


@pytest.fixture(scope="module")
def sequence_problem():
    params, x, y0, c0 = make_lstm(seed=5)
    dy_probe = np.random.default_rng(50).standard_normal((T, N, H))
    _, cache = L.lstm_forward(x, y0, c0, params)
    dx, dy0, dc0, grads = L.lstm_backward(dy_probe, cache)
    analytic = dict(grads, x=dx, y0=dy0, c0=dc0)
    return params, x, y0, c0, dy_probe, analytic


@pytest.mark.parametrize("name", LSTM_KEYS + ("x", "y0", "c0"))
def test_sequence_backward_matches_central_differences(sequence_problem, name):
    params, x, y0, c0, dy_probe, analytic = sequence_problem
    params = {k: v.copy() for k, v in params.items()}
    inputs = {"x": x.copy(), "y0": y0.copy(), "c0": c0.copy()}
    target = params[name] if name in params else inputs[name]

    def J():
        return sequence_loss(params, inputs["x"], inputs["y0"], inputs["c0"], dy_probe)

    numeric = numerical_gradient(J, target)
    assert analytic[name].shape == target.shape
    assert relative_error(analytic[name], numeric) < GRAD_TOL


def test_grads_have_exactly_the_param_keys(sequence_problem):
    params, *_, analytic = sequence_problem
    assert set(analytic) == set(LSTM_KEYS) | {"x", "y0", "c0"}
    for k in LSTM_KEYS:
        assert analytic[k].shape == params[k].shape and analytic[k].dtype == np.float64


def test_sequence_backward_equals_loop_of_step_backward():
    params, x, y0, c0 = make_lstm(seed=6, T=7)
    dy = np.random.default_rng(60).standard_normal((7, N, H))
    caches, y_prev, c_prev = [], y0, c0
    for x_t in x:
        y_prev, c_prev, cache = L.lstm_step_forward(x_t, y_prev, c_prev, params)
        caches.append(cache)
    dx_ref, dy0_ref, dc0_ref, grads_ref = step_backward_loop(dy, caches)

    _, cache = L.lstm_forward(x, y0, c0, params)
    dx, dy0, dc0, grads = L.lstm_backward(dy, cache)
    # Same sums in a different order: equal up to rounding.
    for got, want in [(dx, dx_ref), (dy0, dy0_ref), (dc0, dc0_ref)] + [
            (grads[k], grads_ref[k]) for k in LSTM_KEYS]:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_cell_is_a_gradient_highway():
    # W = R = p = 0, f = 1, i = 0 (to float64 precision): c(t) = c0 for every
    # t, so dJ/dc0 = sum_t dy(t) * o * (1 - tanh(c0)^2) with no decay, however
    # long the sequence.
    n_steps = 40
    params, x, y0, c0 = make_lstm(seed=7, T=n_steps)
    for k in params:
        params[k] = np.zeros_like(params[k])
    params["b_f"] = np.full(H, 40.0)   # sigmoid(40) = 1 - 4e-18
    params["b_i"] = np.full(H, -40.0)
    params["b_o"] = np.linspace(-1.0, 1.0, H)
    dy = np.random.default_rng(70).standard_normal((n_steps, N, H))
    _, cache = L.lstm_forward(x, y0, c0, params)
    _, dy0, dc0, _ = L.lstm_backward(dy, cache)
    o = 1.0 / (1.0 + np.exp(-params["b_o"]))
    expected = dy.sum(axis=0) * o * (1.0 - np.tanh(c0) ** 2)
    np.testing.assert_allclose(dc0, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(dy0, 0.0)  # R = 0: nothing reaches y0


# ----------------------------------------------------------------------------
# Backward: one step, including the dc_t convention


@pytest.fixture(scope="module")
def step_problem():
    params, x, y_prev, c_prev = make_lstm(seed=8)
    rng = np.random.default_rng(80)
    dy_probe = rng.standard_normal((N, H))
    dc_probe = rng.standard_normal((N, H))  # plays the gradient from step t+1
    _, _, cache = L.lstm_step_forward(x[0], y_prev, c_prev, params)
    dx_t, dy_prev, dc_prev, grads = L.lstm_step_backward(dy_probe, dc_probe, cache)
    analytic = dict(grads, x_t=dx_t, y_prev=dy_prev, c_prev=dc_prev)
    return params, x[0], y_prev, c_prev, dy_probe, dc_probe, analytic


@pytest.mark.parametrize("name", LSTM_KEYS + ("x_t", "y_prev", "c_prev"))
def test_step_backward_matches_central_differences(step_problem, name):
    # J = sum(dy_probe * y(t)) + sum(dc_probe * c(t)): dc_probe enters exactly
    # as the dc_t argument does, on c(t) and nowhere else.
    params, x_t, y_prev, c_prev, dy_probe, dc_probe, analytic = step_problem
    params = {k: v.copy() for k, v in params.items()}
    inputs = {"x_t": x_t.copy(), "y_prev": y_prev.copy(), "c_prev": c_prev.copy()}
    target = params[name] if name in params else inputs[name]

    def J():
        y_t, c_t, _ = L.lstm_step_forward(inputs["x_t"], inputs["y_prev"],
                                          inputs["c_prev"], params)
        return float(np.sum(dy_probe * y_t) + np.sum(dc_probe * c_t))

    numeric = numerical_gradient(J, target)
    assert relative_error(analytic[name], numeric) < GRAD_TOL


# ----------------------------------------------------------------------------
# The cell Jacobian


def test_cell_jacobian_diag_matches_central_differences():
    params, x, y_prev, c_prev = make_lstm(seed=9)
    c_prev = c_prev.copy()
    diag = L.cell_jacobian_diag(x[0], y_prev, c_prev, params)
    assert diag.shape == (N, H)

    def c_of_c_prev():
        return L.lstm_step_forward(x[0], y_prev, c_prev, params)[1].copy()

    # Full Jacobian d c(t)[n, k] / d c(t-1)[m, j], column by column.
    eps = 1e-6
    jac = np.zeros((N * H, N * H))
    for col in range(N * H):
        idx = np.unravel_index(col, (N, H))
        old = c_prev[idx]
        c_prev[idx] = old + eps
        plus = c_of_c_prev()
        c_prev[idx] = old - eps
        minus = c_of_c_prev()
        c_prev[idx] = old
        jac[:, col] = (plus - minus).ravel() / (2 * eps)

    # With y(t-1) held fixed each cell only sees its own c(t-1).
    assert np.abs(jac - np.diag(np.diag(jac))).max() < 1e-9
    assert relative_error(diag, np.diag(jac).reshape(N, H)) < GRAD_TOL


def test_cell_jacobian_diag_is_forget_gate_without_peepholes():
    params, x, y_prev, c_prev = make_lstm(seed=10)
    params["p_i"] = np.zeros(H)
    params["p_f"] = np.zeros(H)
    f_bar = x[0] @ params["W_f"].T + y_prev @ params["R_f"].T + params["b_f"]
    f = 1.0 / (1.0 + np.exp(-f_bar))
    diag = L.cell_jacobian_diag(x[0], y_prev, c_prev, params)
    np.testing.assert_allclose(diag, f, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------
# GRU


def test_gru_forward_matches_reference():
    params, x_t, h_prev = make_gru(seed=11)
    h_t, _ = L.gru_step_forward(x_t, h_prev, params)
    assert h_t.shape == (N, H) and h_t.dtype == np.float64
    np.testing.assert_allclose(h_t, ref_gru_step(x_t, h_prev, params), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", GRU_KEYS + ("x_t", "h_prev"))
def test_gru_backward_matches_central_differences(name):
    params, x_t, h_prev = make_gru(seed=12)
    dh_probe = np.random.default_rng(120).standard_normal((N, H))
    _, cache = L.gru_step_forward(x_t, h_prev, params)
    dx_t, dh_prev, grads = L.gru_step_backward(dh_probe, cache)
    assert set(grads) == set(GRU_KEYS)
    analytic = dict(grads, x_t=dx_t, h_prev=dh_prev)

    params = {k: v.copy() for k, v in params.items()}
    inputs = {"x_t": x_t.copy(), "h_prev": h_prev.copy()}
    target = params[name] if name in params else inputs[name]

    def J():
        return float(np.sum(dh_probe * L.gru_step_forward(inputs["x_t"], inputs["h_prev"], params)[0]))

    numeric = numerical_gradient(J, target)
    assert relative_error(analytic[name], numeric) < GRAD_TOL


# ----------------------------------------------------------------------------
# Inputs are left alone


def test_no_function_mutates_its_inputs():
    params, x, y0, c0 = make_lstm(seed=13)
    dy = np.random.default_rng(130).standard_normal((T, N, H))
    dc = np.random.default_rng(131).standard_normal((N, H))
    gparams, gx, gh = make_gru(seed=13)
    dh = np.random.default_rng(132).standard_normal((N, H))
    args = (params, x, y0, c0, dy, dc, gparams, gx, gh, dh)
    before = copy.deepcopy(args)

    y, cache = L.lstm_forward(x, y0, c0, params)
    L.lstm_backward(dy, cache)
    L.lstm_backward(dy, cache)  # the cache survives a backward pass
    _, _, step_cache = L.lstm_step_forward(x[0], y0, c0, params)
    L.lstm_step_backward(dy[0], dc, step_cache)
    L.cell_jacobian_diag(x[0], y0, c0, params)
    _, gcache = L.gru_step_forward(gx, gh, gparams)
    L.gru_step_backward(dh, gcache)
    assert_same(args, before)

    # Editing the returned y must not change what backward computes.
    grads_before = L.lstm_backward(dy, cache)
    y[...] = 0.0
    assert_same(L.lstm_backward(dy, cache), grads_before)
