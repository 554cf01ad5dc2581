"""Chapter 1 reference: gradients against central differences, closed forms, stability."""
import copy
import warnings

import numpy as np
import pytest

from solutions import dcl_backprop as ref
from tests.solutions.helpers import assert_same

# Central differences at eps = 1e-6 on O(1) smooth functions are accurate to
# ~1e-9 absolute; elementwise relative error stays below 1e-6 for entries
# that are not themselves tiny.  A wrong gradient is off by O(1).
GRAD_TOL = 1e-6


def fd(f, x, eps=1e-6):
    """Slow central differences on a copy (independent of numerical_gradient)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_activations_closed_forms():
    z = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    assert np.allclose(ref.sigmoid(z), 1 / (1 + np.exp(-z)), rtol=1e-15, atol=0)
    assert np.array_equal(ref.relu(z), [0, 0, 0, 0.5, 3.0])
    s = 1 / (1 + np.exp(-z))
    assert np.allclose(ref.sigmoid_grad(z), s * (1 - s), rtol=1e-14, atol=0)
    assert np.allclose(ref.tanh_grad(z), 1 / np.cosh(z) ** 2, rtol=1e-13, atol=0)
    assert np.array_equal(ref.relu_grad(z), [0, 0, 0, 1, 1])


@pytest.mark.parametrize("name, f", [("sigmoid_grad", lambda v: 1 / (1 + np.exp(-v))),
                                     ("tanh_grad", np.tanh)])
def test_activation_grads_match_finite_differences(name, f):
    z = np.linspace(-4, 4, 17)
    g = getattr(ref, name)(z)
    num = (f(z + 1e-6) - f(z - 1e-6)) / 2e-6
    assert ref.relative_error(g, num) < GRAD_TOL


def test_sigmoid_is_stable_and_symmetric():
    z = np.array([-1000.0, -745.0, -50.0, 0.0, 50.0, 745.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = ref.sigmoid(z)
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    assert np.allclose(s + ref.sigmoid(-z), 1.0, rtol=0, atol=1e-15)


def test_relu_grad_at_zero_is_zero():
    assert ref.relu_grad(np.array([0.0]))[0] == 0.0


def test_dense_backward_matches_finite_differences(rng):
    x, W, b = rng.normal(size=(4, 3)), rng.normal(size=(5, 3)), rng.normal(size=5)
    dz = rng.normal(size=(4, 5))
    z, cache = ref.dense_forward(x, W, b)
    assert np.allclose(z, np.einsum("nd,od->no", x, W) + b)
    dx, dW, db = ref.dense_backward(dz, cache)
    J = lambda x_, W_, b_: np.sum((x_ @ W_.T + b_) * dz)
    assert ref.relative_error(dx, fd(lambda v: J(v, W, b), x)) < GRAD_TOL
    assert ref.relative_error(dW, fd(lambda v: J(x, v, b), W)) < GRAD_TOL
    assert ref.relative_error(db, fd(lambda v: J(x, W, v), b)) < GRAD_TOL


def test_softmax_rows_and_stability():
    z = np.array([[1000.0, 1000.0, 0.0], [-5.0, 0.0, 5.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = ref.softmax(z)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.allclose(p[0], [0.5, 0.5, 0.0])
    small = np.array([[0.5, -1.0, 2.0]])
    assert np.allclose(ref.log_softmax(small), np.log(np.exp(small) / np.exp(small).sum()), rtol=1e-14)
    assert np.allclose(ref.log_softmax(np.array([[1000.0, 0.0]])), [[0.0, -1000.0]])


def test_softmax_cross_entropy_value_and_gradient(rng):
    logits = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, size=6)

    def loss(v):
        p = np.exp(v) / np.exp(v).sum(axis=1, keepdims=True)
        return -np.mean(np.log(p[np.arange(6), y]))

    value, d = ref.softmax_cross_entropy(logits, y)
    assert isinstance(value, float)
    assert abs(value - loss(logits)) < 1e-12
    assert ref.relative_error(d, fd(loss, logits)) < GRAD_TOL
    big, _ = ref.softmax_cross_entropy(np.array([[1000.0, 0.0]]), np.array([1]))
    assert big == pytest.approx(1000.0)


@pytest.mark.parametrize("shape", [(7,), (7, 1)])
def test_bce_with_logits(rng, shape):
    z = rng.normal(size=shape) * 2
    y = rng.integers(0, 2, size=shape).astype(float)

    def loss(v):
        s = 1 / (1 + np.exp(-v))
        return -np.mean(y * np.log(s) + (1 - y) * np.log(1 - s))

    value, dz = ref.bce_with_logits(z, y)
    assert dz.shape == z.shape
    assert abs(value - loss(z)) < 1e-12
    assert ref.relative_error(dz, fd(loss, z)) < GRAD_TOL
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        v, d = ref.bce_with_logits(np.array([1000.0, -1000.0]), np.array([0.0, 1.0]))
    assert v == pytest.approx(1000.0) and np.allclose(d, [0.5, -0.5])


def test_numerical_gradient_is_central_and_restores_x(rng):
    x = rng.normal(size=(3, 2))
    x0 = x.copy()
    A = rng.normal(size=(3, 2))
    g = ref.numerical_gradient(lambda: np.sum(A * x**3), x)
    assert np.array_equal(x, x0)
    assert ref.relative_error(g, 3 * A * x0**2) < 1e-8  # central: O(eps^2) error
    g_big = ref.numerical_gradient(lambda: np.sum(np.abs(x)), x, eps=10.0)
    assert np.allclose(g_big, (np.abs(x0 + 10) - np.abs(x0 - 10)) / 20)


def test_relative_error_definition():
    assert ref.relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 4.2)
    assert ref.relative_error(np.zeros(2), np.zeros(2)) == 0.0
    assert ref.relative_error(np.array([0.0]), np.array([1e-9])) == pytest.approx(0.1)
    assert isinstance(ref.relative_error(np.ones(1), np.ones(1)), float)


def test_mlp_gradients(rng):
    p = {"W1": rng.normal(size=(5, 4)), "b1": rng.normal(size=5),
         "W2": rng.normal(size=(3, 5)), "b2": rng.normal(size=3)}
    x, y = rng.normal(size=(6, 4)), rng.integers(0, 3, size=6)
    before = {k: v.copy() for k, v in p.items()}
    loss, grads = ref.mlp_loss_and_grads(p, x, y)
    assert set(grads) == set(p)
    for k in p:
        num = fd(lambda v: ref.mlp_loss_and_grads({**p, k: v}, x, y)[0], p[k])
        assert ref.relative_error(grads[k], num) < GRAD_TOL, k
    assert all(np.array_equal(before[k], p[k]) for k in p)


def test_optimizers_closed_forms():
    p = {"w": np.array([1.0, -2.0])}
    g = {"w": np.array([0.2, 0.4])}
    assert np.allclose(ref.sgd_step(p, g, 0.1)["w"], [0.98, -2.04])
    p1, s1 = ref.momentum_step(p, g, {}, 0.1, beta=0.9)
    p2, _ = ref.momentum_step(p1, g, s1, 0.1, beta=0.9)
    assert np.allclose(p2["w"], p["w"] - 0.1 * (0.1 + 0.19) * g["w"])
    r1, _ = ref.rmsprop_step(p, g, {}, 0.01, beta=0.9)
    assert np.allclose(r1["w"], p["w"] - 0.01 * g["w"] / (np.sqrt(0.1) * np.abs(g["w"]) + 1e-8))
    a1, st = ref.adam_step(p, g, {}, 0.1)
    assert st["t"] == 1
    assert np.allclose(a1["w"], p["w"] - 0.1 * np.sign(g["w"]), atol=1e-7)
    w1, _ = ref.adam_step(p, g, {}, 0.1, weight_decay=0.5)
    assert np.allclose(w1["w"], a1["w"] - 0.1 * 0.5 * p["w"])
    assert np.array_equal(p["w"], [1.0, -2.0]) and np.array_equal(g["w"], [0.2, 0.4])


def test_adam_converges_on_a_quadratic():
    p, state = {"w": np.array([3.0, -4.0])}, {}
    for _ in range(2000):
        p, state = ref.adam_step(p, {"w": 2 * p["w"]}, state, 0.05)
    assert np.abs(p["w"]).max() < 1e-2


# ----------------------------------------------------------------------------
# Dropout and the L2 penalty


class ScriptedRng:
    """Stands in for a Generator: hands out prescribed uniforms and records every draw."""

    def __init__(self, u):
        self.u, self.calls = np.asarray(u, dtype=float), []

    def random(self, size=None):
        self.calls.append(size)
        return self.u.copy()


def test_dropout_keeps_where_u_is_at_least_p_and_scales_by_one_over_keep():
    x = np.array([[1.0, -2.0, 3.0, 4.0], [0.5, 0.5, -1.0, 8.0]])
    u = np.array([[0.0, 0.25, 0.2499, 0.9], [0.3, 0.1, 0.25, 0.75]])
    rng = ScriptedRng(u)
    out, cache = ref.dropout_forward(x, 0.25, rng)
    # kept (u >= 0.25) entries are divided by 0.75, the rest are 0; worked out by hand
    assert np.allclose(out, [[0.0, -8 / 3, 0.0, 16 / 3], [2 / 3, 0.0, -4 / 3, 32 / 3]],
                       rtol=1e-15, atol=0)
    assert rng.calls == [x.shape]
    dx = ref.dropout_backward(np.arange(8.0).reshape(2, 4), cache)
    assert np.allclose(dx, [[0.0, 4 / 3, 0.0, 4.0], [16 / 3, 0.0, 8.0, 28 / 3]], rtol=1e-15, atol=0)


@pytest.mark.parametrize("shape, p", [((6, 5), 0.3), ((3, 4, 2), 0.5), ((7,), 0.9)])
def test_dropout_mask_is_one_draw_of_the_shape_of_x(shape, p):
    x = np.random.default_rng(1).normal(size=shape)
    x0 = x.copy()
    rng = np.random.default_rng(2024)
    twin = copy.deepcopy(rng)
    out, _ = ref.dropout_forward(x, p, rng)
    u = twin.random(x.shape)          # the twin draws once, as the contract says
    assert out.shape == x.shape and out.dtype == np.float64
    assert np.allclose(out, np.where(u >= p, x / (1 - p), 0.0), rtol=1e-15, atol=0)
    # exactly one draw: both generators are now in the same state
    assert rng.bit_generator.state == twin.bit_generator.state
    assert rng.random() == twin.random()
    np.testing.assert_array_equal(x, x0)


def test_dropout_with_p_zero_keeps_everything_but_still_draws_once():
    x = np.random.default_rng(3).normal(size=(4, 3))
    rng = np.random.default_rng(5)
    twin = copy.deepcopy(rng)
    out, cache = ref.dropout_forward(x, 0.0, rng)
    twin.random(x.shape)
    np.testing.assert_array_equal(out, x)
    assert rng.bit_generator.state == twin.bit_generator.state
    np.testing.assert_array_equal(ref.dropout_backward(np.ones((4, 3)), cache), np.ones((4, 3)))


def test_dropout_at_evaluation_is_the_identity_and_draws_nothing():
    x = np.random.default_rng(4).normal(size=(5, 6))
    x0 = x.copy()
    rng = np.random.default_rng(6)
    state = copy.deepcopy(rng.bit_generator.state)
    out, cache = ref.dropout_forward(x, 0.5, rng, train=False)
    np.testing.assert_array_equal(out, x0)
    assert rng.bit_generator.state == state
    dout = np.random.default_rng(8).normal(size=(5, 6))
    dout0 = dout.copy()
    np.testing.assert_array_equal(ref.dropout_backward(dout, cache), dout0)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dout, dout0)
    stub = ScriptedRng(np.zeros((5, 6)))
    ref.dropout_forward(x, 0.5, stub, train=False)
    assert stub.calls == []


def test_dropout_backward_matches_finite_differences():
    x = np.random.default_rng(9).normal(size=(4, 5))
    dout = np.random.default_rng(10).normal(size=(4, 5))
    # the same seed in every call draws the same mask, so J is a smooth (linear) function of x
    J = lambda v: np.sum(ref.dropout_forward(v, 0.4, np.random.default_rng(11))[0] * dout)
    _, cache = ref.dropout_forward(x, 0.4, np.random.default_rng(11))
    dout0 = dout.copy()
    dx = ref.dropout_backward(dout, cache)
    assert ref.relative_error(dx, fd(J, x)) < GRAD_TOL
    np.testing.assert_array_equal(dout, dout0)


def test_dropout_keeps_the_mean_and_drops_a_share_p():
    x = np.full((400, 500), 2.0)
    out, _ = ref.dropout_forward(x, 0.3, np.random.default_rng(12))
    # 200000 Bernoulli(0.7) draws: the standard error of the kept share is about 0.001
    assert abs(np.mean(out == 0.0) - 0.3) < 0.005
    assert abs(out.mean() - 2.0) < 0.02
    assert set(np.unique(out)) == {0.0, 2.0 / 0.7}


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_dropout_rejects_p_outside_zero_one(p):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        ref.dropout_forward(np.ones((2, 2)), p, rng)
    with pytest.raises(ValueError):
        ref.dropout_forward(np.ones((2, 2)), p, rng, train=False)


def test_l2_penalty_by_hand():
    params = {"W1": np.array([[1.0, 2.0], [3.0, -1.0]]), "b1": np.array([5.0, 5.0]),
              "W2": np.array([[0.5, -0.5]]), "b2": np.array([7.0])}
    before = copy.deepcopy(params)
    penalty, grads = ref.l2_penalty(params, 0.1)
    assert isinstance(penalty, float)
    assert penalty == pytest.approx(0.1 / 2 * (1 + 4 + 9 + 1 + 0.25 + 0.25), rel=1e-15)
    assert list(grads) == list(params)
    assert np.allclose(grads["W1"], [[0.1, 0.2], [0.3, -0.1]], rtol=1e-15, atol=0)
    assert np.allclose(grads["W2"], [[0.05, -0.05]], rtol=1e-15, atol=0)
    for k in ("b1", "b2"):
        assert grads[k].shape == params[k].shape and not grads[k].any()
    assert_same(params, before)
    zero, zero_grads = ref.l2_penalty(params, 0.0)
    assert zero == 0.0 and not any(g.any() for g in zero_grads.values())


def test_l2_penalty_gradient_matches_finite_differences(rng):
    params = {"W1": rng.normal(size=(5, 3)), "b1": rng.normal(size=5),
              "W2": rng.normal(size=(2, 5)), "b2": rng.normal(size=2), "gamma": rng.normal(size=4)}
    before = copy.deepcopy(params)
    _, grads = ref.l2_penalty(params, 0.37)
    assert set(grads) == set(params)
    for k in params:
        num = fd(lambda v: ref.l2_penalty({**params, k: v}, 0.37)[0], params[k])
        assert grads[k].shape == params[k].shape
        assert np.allclose(grads[k], num, rtol=0, atol=1e-8), k
    assert not grads["gamma"].any()   # only the keys starting with "W" are weights
    assert_same(params, before)


# ----------------------------------------------------------------------------
# Early stopping


def _stop_run(losses, patience):
    state, out = {}, []
    for epoch, loss in enumerate(losses, start=1):
        state, stop = ref.early_stopping(state, epoch, loss, {"W": np.array([float(epoch)])},
                                         patience)
        out.append((state["best_epoch"], state["best_loss"], float(state["best_params"]["W"][0]),
                    stop))
    return out


def test_early_stopping_by_hand():
    # best at epoch 2 (0.5); epoch 4 ties it (no improvement); patience 2 stops at epoch 4
    got = _stop_run([0.9, 0.5, 0.7, 0.5, 0.4], patience=2)
    assert [g[0] for g in got] == [1, 2, 2, 2, 5]
    assert [g[3] for g in got] == [False, False, False, True, False]
    assert got[3][1] == 0.5 and got[3][2] == 2.0     # the params of epoch 2, not of epoch 4
    assert got[4][2] == 5.0


def test_early_stopping_without_patience_never_stops_and_keeps_state():
    got = _stop_run([0.3, 0.4, 0.5, 0.6, 0.7, 0.8], patience=None)
    assert not any(g[3] for g in got) and got[-1][0] == 1
    state, _ = ref.early_stopping({}, 1, 0.5, {"W": np.zeros(1)}, 1)
    before = dict(state)
    new, stop = ref.early_stopping(state, 2, 0.1, {"W": np.ones(1)}, 1)
    assert state == before and new is not state and new["best_epoch"] == 2 and stop is False
