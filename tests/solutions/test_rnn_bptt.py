"""Tests of solutions.rnn_bptt (chapter 2: simple RNN and BPTT).

Oracles: central differences of the loss through whole sequences, a slow
per-example reference written here with explicit loops, closed forms done by
hand, and invariants of clipping and truncated BPTT.

Tolerances for gradient checks: with eps = 1e-6 the central difference has
truncation error O(eps^2) ~ 1e-12 and rounding error ~ 1e-16 * |J| / eps
~ 1e-10, against gradient entries of order 1e-2 to 1, so a relative error
below 1e-6 is expected for a correct gradient; a wrong term gives O(1).
"""
import copy
import math

import numpy as np
import pytest

from solutions import rnn_bptt as R
from solutions.dcl_backprop import numerical_gradient, relative_error, softmax_cross_entropy
from tests.solutions.helpers import assert_same

# Any overflow / invalid-value warning is a numerical-stability bug.
pytestmark = pytest.mark.filterwarnings("error")

T, N, D, H, K = 5, 3, 4, 6, 7
KEYS = ("U", "W", "b", "V", "c")
GRAD_TOL = 1e-6


def make_problem(seed=0, T=T, N=N, scale=0.5):
    """Random non-square problem with non-zero biases and non-zero h0."""
    rng = np.random.default_rng(seed)
    params = {
        "U": scale * rng.standard_normal((H, D)),
        "W": scale * rng.standard_normal((H, H)),
        "b": scale * rng.standard_normal(H),
        "V": scale * rng.standard_normal((K, H)),
        "c": scale * rng.standard_normal(K),
    }
    x = rng.standard_normal((T, N, D))
    y = rng.integers(0, K, size=(T, N))
    h0 = 0.5 * rng.standard_normal((N, H))
    return params, x, y, h0


def snapshot(obj):
    return copy.deepcopy(obj)


# ----------------------------------------------------------------------------
# A slow reference written independently: one example, one step at a time.


def ref_hidden(params, x, h0):
    """h[t, n] by explicit loops over time and examples (column-vector math)."""
    Tn, Nn = x.shape[:2]
    h = np.zeros((Tn, Nn, H))
    for n in range(Nn):
        h_prev = h0[n]
        for t in range(Tn):
            a = params["b"] + params["W"].dot(h_prev) + params["U"].dot(x[t, n])
            h_prev = np.tanh(a)
            h[t, n] = h_prev
    return h


def ref_loss(params, x, y, h0):
    """J = sum_t mean_n -log softmax(c + V h(t))[y], by loops and logsumexp."""
    h = ref_hidden(params, x, h0)
    Tn, Nn = y.shape
    J = 0.0
    for t in range(Tn):
        for n in range(Nn):
            o = params["c"] + params["V"].dot(h[t, n])
            m = o.max()
            J += (m + math.log(np.exp(o - m).sum()) - o[y[t, n]]) / Nn
    return J


# ----------------------------------------------------------------------------
# One step


def test_step_forward_closed_form_by_hand():
    # H = D = 1: a = b + W h_prev + U x = 0.1 + 0.5*0.4 + 2*1 = 2.3
    h_t, _ = R.rnn_step_forward(np.array([[1.0]]), np.array([[0.4]]),
                                np.array([[2.0]]), np.array([[0.5]]), np.array([0.1]))
    assert h_t.shape == (1, 1)
    assert h_t[0, 0] == pytest.approx(math.tanh(2.3), abs=1e-15)


def test_step_forward_matches_reference():
    params, x, _, h0 = make_problem(1)
    h_t, _ = R.rnn_step_forward(x[0], h0, params["U"], params["W"], params["b"])
    assert h_t.shape == (N, H) and h_t.dtype == np.float64
    np.testing.assert_allclose(h_t, ref_hidden(params, x[:1], h0)[0], rtol=1e-13, atol=1e-14)


def test_step_backward_vs_central_differences():
    params, x, _, h0 = make_problem(2)
    x_t, h_prev = x[0].copy(), h0.copy()
    U, W, b = params["U"].copy(), params["W"].copy(), params["b"].copy()
    G = np.random.default_rng(3).standard_normal((N, H))  # J = sum(G * h_t)

    def J():
        return float(np.sum(G * R.rnn_step_forward(x_t, h_prev, U, W, b)[0]))

    _, cache = R.rnn_step_forward(x_t, h_prev, U, W, b)
    dx_t, dh_prev, dU, dW, db = R.rnn_step_backward(G, cache)
    assert dx_t.shape == (N, D) and dh_prev.shape == (N, H)
    assert dU.shape == (H, D) and dW.shape == (H, H) and db.shape == (H,)
    for analytic, arr in [(dx_t, x_t), (dh_prev, h_prev), (dU, U), (dW, W), (db, b)]:
        assert relative_error(analytic, numerical_gradient(J, arr)) < GRAD_TOL


@pytest.mark.parametrize("forward, backward, whole_sequence", [
    (R.rnn_step_forward, R.rnn_step_backward, False),
    (R.rnn_forward, R.rnn_backward, True),
])
def test_forward_and_backward_do_not_mutate_inputs(forward, backward, whole_sequence):
    params, x, _, h0 = make_problem(11 if whole_sequence else 4)
    args = (x if whole_sequence else x[0], h0, params["U"], params["W"], params["b"])
    before = snapshot(args)
    h, cache = forward(*args)
    assert_same(args, before)
    dh = np.ones_like(h)
    cache_before, dh_before = snapshot(cache), dh.copy()
    backward(dh, cache)
    assert_same(cache, cache_before)
    assert_same(dh, dh_before)
    assert_same(args, before)


# ----------------------------------------------------------------------------
# A whole sequence


def test_rnn_forward_matches_reference():
    params, x, _, h0 = make_problem(5)
    h, _ = R.rnn_forward(x, h0, params["U"], params["W"], params["b"])
    assert h.shape == (T, N, H)
    np.testing.assert_allclose(h, ref_hidden(params, x, h0), rtol=1e-12, atol=1e-13)


def test_rnn_backward_equals_loop_of_step_backward():
    params, x, _, h0 = make_problem(6)
    U, W, b = params["U"], params["W"], params["b"]
    dh = np.random.default_rng(7).standard_normal((T, N, H))

    # Unfold by hand with the step functions, then walk back in time.
    caches, h_prev = [], h0
    for t in range(T):
        h_prev, cache_t = R.rnn_step_forward(x[t], h_prev, U, W, b)
        caches.append(cache_t)
    dx_ref = np.zeros((T, N, D))
    dU_ref, dW_ref, db_ref = np.zeros((H, D)), np.zeros((H, H)), np.zeros(H)
    carry = np.zeros((N, H))
    for t in range(T - 1, -1, -1):
        dx_ref[t], carry, gU, gW, gb = R.rnn_step_backward(dh[t] + carry, caches[t])
        dU_ref, dW_ref, db_ref = dU_ref + gU, dW_ref + gW, db_ref + gb

    _, cache = R.rnn_forward(x, h0, U, W, b)
    dx, dh0, dU, dW, db = R.rnn_backward(dh, cache)
    for got, want in [(dx, dx_ref), (dh0, carry), (dU, dU_ref), (dW, dW_ref), (db, db_ref)]:
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_rnn_backward_vs_central_differences():
    params, x, _, h0 = make_problem(8)
    x, h0 = x.copy(), h0.copy()
    U, W, b = params["U"].copy(), params["W"].copy(), params["b"].copy()
    G = np.random.default_rng(9).standard_normal((T, N, H))  # upstream on every h(t)

    def J():
        return float(np.sum(G * ref_hidden({"U": U, "W": W, "b": b}, x, h0)))

    _, cache = R.rnn_forward(x, h0, U, W, b)
    dx, dh0, dU, dW, db = R.rnn_backward(G, cache)
    for analytic, arr in [(dx, x), (dh0, h0), (dU, U), (dW, W), (db, b)]:
        assert relative_error(analytic, numerical_gradient(J, arr)) < GRAD_TOL


def test_rnn_backward_upstream_only_at_last_step_reaches_h0():
    # Many-to-one: gradient only on h(T) must still reach x(1) and h0.
    params, x, _, h0 = make_problem(10)
    _, cache = R.rnn_forward(x, h0, params["U"], params["W"], params["b"])
    dh = np.zeros((T, N, H))
    dh[-1] = 1.0
    dx, dh0, *_ = R.rnn_backward(dh, cache)
    assert np.all(np.abs(dx[0]) > 0) and np.all(np.abs(dh0) > 0)


@pytest.mark.parametrize("s", [1, 3, T])
def test_rnn_backward_index_convention_of_its_docstring(s):
    # The docstring mixes array indices (from 0) and math time (from 1): it must say that
    # dh[t-1] is the gradient arriving on h(t), and that is what the code must do. An
    # upstream gradient G in dh[s-1] alone is the loss J = sum(G * h(s)).
    doc = R.rnn_backward.__doc__
    assert "dh[t-1] = the gradient arriving on h(t)" in doc and "dh[t]" not in doc
    params, x, _, h0 = make_problem(40)
    x = x.copy()
    G = np.random.default_rng(41).standard_normal((N, H))

    def J():
        return float(np.sum(G * ref_hidden(params, x, h0)[s - 1]))  # h[s-1] = h(s)

    _, cache = R.rnn_forward(x, h0, params["U"], params["W"], params["b"])
    dh = np.zeros((T, N, H))
    dh[s - 1] = G
    dx, *_ = R.rnn_backward(dh, cache)
    assert relative_error(dx, numerical_gradient(J, x)) < GRAD_TOL
    assert np.all(dx[s:] == 0.0)  # x(s+1), ... come after h(s)


# ----------------------------------------------------------------------------
# Loss


def test_temporal_loss_is_sum_of_per_step_batch_means():
    rng = np.random.default_rng(12)
    logits = 3.0 * rng.standard_normal((T, N, K))
    y = rng.integers(0, K, size=(T, N))
    before = (logits.copy(), y.copy())
    loss, dlogits = R.temporal_softmax_cross_entropy(logits, y)
    assert_same((logits, y), before)
    assert isinstance(loss, float) and dlogits.shape == (T, N, K)

    per_step = [softmax_cross_entropy(logits[t], y[t]) for t in range(T)]
    assert loss == pytest.approx(sum(l for l, _ in per_step), rel=1e-13)
    for t in range(T):
        np.testing.assert_allclose(dlogits[t], per_step[t][1], rtol=1e-12, atol=1e-15)
    # (softmax - onehot) / N: every row of dlogits sums to 0.
    np.testing.assert_allclose(dlogits.sum(axis=-1), 0.0, atol=1e-15)


def test_temporal_loss_gradient_vs_central_differences():
    rng = np.random.default_rng(13)
    logits = rng.standard_normal((T, N, K))
    y = rng.integers(0, K, size=(T, N))
    _, dlogits = R.temporal_softmax_cross_entropy(logits, y)
    num = numerical_gradient(lambda: R.temporal_softmax_cross_entropy(logits, y)[0], logits)
    assert relative_error(dlogits, num) < GRAD_TOL


def test_temporal_loss_large_logits_closed_form():
    # Step 1: label 1 has logit 0 against 1000 -> loss 1000 + log(1 + e^-1000) = 1000.
    # Step 2: the right class wins by 1000      -> loss log(1 + e^-1000) = 0 in float64.
    logits = np.array([[[1000.0, 0.0]], [[0.0, 1000.0]]])
    y = np.array([[1], [1]])
    loss, dlogits = R.temporal_softmax_cross_entropy(logits, y)
    assert loss == pytest.approx(1000.0, rel=1e-15)
    np.testing.assert_allclose(dlogits, [[[1.0, -1.0]], [[0.0, 0.0]]], atol=1e-15)


# ----------------------------------------------------------------------------
# Full BPTT through the loss


def test_rnn_loss_matches_reference_and_h_last():
    params, x, y, h0 = make_problem(14)
    loss, grads, h_last = R.rnn_loss_and_grads(params, x, y, h0)
    assert isinstance(loss, float)
    assert set(grads) == set(KEYS)
    assert loss == pytest.approx(ref_loss(params, x, y, h0), rel=1e-12)
    np.testing.assert_allclose(h_last, ref_hidden(params, x, h0)[-1], rtol=1e-12, atol=1e-14)


def test_rnn_loss_and_grads_vs_central_differences():
    params, x, y, h0 = make_problem(15)
    params = {k: v.copy() for k, v in params.items()}
    _, grads, _ = R.rnn_loss_and_grads(params, x, y, h0)
    for key in KEYS:
        num = numerical_gradient(lambda: ref_loss(params, x, y, h0), params[key])
        assert grads[key].shape == params[key].shape
        assert relative_error(grads[key], num) < GRAD_TOL, key


def test_input_and_h0_gradients_through_the_loss_vs_central_differences():
    # dJ/dx and dJ/dh0 through the whole many-to-many loss, assembled from
    # the graded pieces: the output layer sends dlogits V into rnn_backward.
    params, x, y, h0 = make_problem(16)
    x, h0 = x.copy(), h0.copy()
    h, cache = R.rnn_forward(x, h0, params["U"], params["W"], params["b"])
    logits = h @ params["V"].T + params["c"]
    _, dlogits = R.temporal_softmax_cross_entropy(logits, y)
    dx, dh0, *_ = R.rnn_backward(dlogits @ params["V"], cache)
    J = lambda: ref_loss(params, x, y, h0)  # noqa: E731
    assert relative_error(dx, numerical_gradient(J, x)) < GRAD_TOL
    assert relative_error(dh0, numerical_gradient(J, h0)) < GRAD_TOL


def test_rnn_logits_helper():
    params, x, _, h0 = make_problem(17)
    h = ref_hidden(params, x, h0)
    o = R.rnn_logits(h, params["V"], params["c"])
    want = np.einsum("kh,tnh->tnk", params["V"], h) + params["c"]
    np.testing.assert_allclose(o, want, rtol=1e-13, atol=1e-14)


def test_rnn_loss_and_grads_does_not_mutate_inputs():
    params, x, y, h0 = make_problem(18)
    before = snapshot((params, x, y, h0))
    _, _, h_last = R.rnn_loss_and_grads(params, x, y, h0)
    assert_same((params, x, y, h0), before)
    assert not np.shares_memory(h_last, h0)


# ----------------------------------------------------------------------------
# Gradient clipping


def random_grads(seed, scale):
    rng = np.random.default_rng(seed)
    return {"U": scale * rng.standard_normal((H, D)), "W": scale * rng.standard_normal((H, H)),
            "b": scale * rng.standard_normal(H)}


def global_norm(grads):
    return float(np.linalg.norm(np.concatenate([g.ravel() for g in grads.values()])))


def test_clip_scales_to_max_norm_and_keeps_direction():
    grads = random_grads(19, scale=10.0)
    before = snapshot(grads)
    norm = global_norm(grads)
    max_norm = 1.5
    assert norm > max_norm
    clipped, total = R.clip_grad_norm(grads, max_norm)
    assert_same(grads, before)
    assert isinstance(total, float) and total == pytest.approx(norm, rel=1e-13)
    assert global_norm(clipped) == pytest.approx(max_norm, rel=1e-13)
    # One common positive factor for every array: the direction is kept.
    factor = max_norm / norm
    for k in grads:
        np.testing.assert_allclose(clipped[k], factor * grads[k], rtol=1e-13)
    assert clipped is not grads


def test_clip_leaves_small_gradients_unchanged():
    grads = random_grads(20, scale=0.01)
    norm = global_norm(grads)
    for max_norm in (10.0, norm):  # below, and exactly at the threshold
        clipped, total = R.clip_grad_norm(grads, max_norm)
        assert total == pytest.approx(norm, rel=1e-13)
        assert clipped is not grads and set(clipped) == set(grads)
        for k in grads:
            np.testing.assert_allclose(clipped[k], grads[k], rtol=1e-15)
            assert not np.shares_memory(clipped[k], grads[k])


def test_clip_zero_gradients():
    grads = {k: np.zeros_like(v) for k, v in random_grads(21, 1.0).items()}
    clipped, total = R.clip_grad_norm(grads, 1.0)
    assert total == 0.0
    for k in grads:
        np.testing.assert_array_equal(clipped[k], 0.0)


# ----------------------------------------------------------------------------
# Truncated BPTT


def test_tbptt_single_chunk_lr0_equals_full_loss():
    params, x, y, h0 = make_problem(22)
    full, _, _ = R.rnn_loss_and_grads(params, x, y, h0)
    for k in (T, T + 3):
        new, losses = R.tbptt_train(params, x, y, h0, k=k, lr=0.0)
        assert len(losses) == 1 and isinstance(losses[0], float)
        assert losses[0] == pytest.approx(full, rel=1e-14)
        assert_same(new, params)


@pytest.mark.parametrize("max_norm", [None, 0.5])
def test_tbptt_k_equals_T_is_one_sgd_step_of_full_bptt(max_norm):
    params, x, y, h0 = make_problem(23)
    lr = 0.3
    _, grads, _ = R.rnn_loss_and_grads(params, x, y, h0)
    if max_norm is not None:
        assert global_norm(grads) > max_norm  # so that clipping really acts
        grads = {k: g * (max_norm / global_norm(grads)) for k, g in grads.items()}
    new, _ = R.tbptt_train(params, x, y, h0, k=T, lr=lr, max_norm=max_norm)
    assert set(new) == set(KEYS)
    for k in KEYS:
        np.testing.assert_allclose(new[k], params[k] - lr * grads[k], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_tbptt_chunk_losses_sum_to_full_loss_when_lr0(k):
    # With lr = 0 and h carried, chunking changes the gradients, not the loss.
    params, x, y, h0 = make_problem(24)
    _, losses = R.tbptt_train(params, x, y, h0, k=k, lr=0.0)
    assert len(losses) == -(-T // k)  # ceil(T / k); the last chunk may be shorter
    assert sum(losses) == pytest.approx(ref_loss(params, x, y, h0), rel=1e-12)


def test_tbptt_carries_hidden_state_across_chunks():
    params, x, y, h0 = make_problem(25)
    k = 2
    _, losses = R.tbptt_train(params, x, y, h0, k=k, lr=0.0)
    # Expected chunk losses: slices of the full unrolled sequence.
    h_full = ref_hidden(params, x, h0)
    for j, start in enumerate(range(0, T, k)):
        h_init = h0 if start == 0 else h_full[start - 1]
        want = ref_loss(params, x[start:start + k], y[start:start + k], h_init)
        assert losses[j] == pytest.approx(want, rel=1e-12)
    # A version that restarts every chunk from h0 gives visibly different losses,
    # so the check above would catch it.
    reset = [ref_loss(params, x[s:s + k], y[s:s + k], h0) for s in range(k, T, k)]
    assert all(abs(a - b) > 1e-3 for a, b in zip(losses[1:], reset))


def test_tbptt_updates_per_chunk_with_truncated_gradients():
    # Independent oracle: central differences of each chunk's loss with its
    # initial state held constant, SGD after each chunk, the state carried
    # from the forward pass made with the parameters of that chunk.
    params, x, y, h0 = make_problem(26)
    k, lr, max_norm = 3, 0.2, None
    theta = {key: v.copy() for key, v in params.items()}
    h_init = h0
    want_losses = []
    for start in range(0, T, k):
        xs, ys = x[start:start + k], y[start:start + k]
        hi = h_init
        want_losses.append(ref_loss(theta, xs, ys, hi))
        g = {key: numerical_gradient(lambda: ref_loss(theta, xs, ys, hi), theta[key])
             for key in KEYS}
        h_init = ref_hidden(theta, xs, hi)[-1]
        theta = {key: theta[key] - lr * g[key] for key in KEYS}

    new, losses = R.tbptt_train(params, x, y, h0, k=k, lr=lr, max_norm=max_norm)
    # From the second chunk on, the oracle's parameters carry the ~1e-10
    # error of its numerical gradients (times lr), hence rel=1e-8.
    assert losses == pytest.approx(want_losses, rel=1e-8)
    for key in KEYS:
        # Compare the total update (theta - theta0) / lr, a sum of gradients.
        got_step = (params[key] - new[key]) / lr
        want_step = (params[key] - theta[key]) / lr
        assert relative_error(got_step, want_step) < 1e-6, key


def test_tbptt_rejects_bad_chunk_length():
    params, x, y, h0 = make_problem(27)
    with pytest.raises(ValueError):
        R.tbptt_train(params, x, y, h0, k=0, lr=0.1)


def test_tbptt_does_not_mutate_inputs():
    params, x, y, h0 = make_problem(28)
    before = snapshot((params, x, y, h0))
    new, _ = R.tbptt_train(params, x, y, h0, k=2, lr=0.1, max_norm=0.1)
    assert_same((params, x, y, h0), before)
    assert new is not params
    assert all(not np.shares_memory(new[k], params[k]) for k in KEYS)


# ----------------------------------------------------------------------------
# The Jacobian behind vanishing / exploding gradients


def one_sequence(seed):
    """x (T, D), h (T+1, H) with h[0] = h0, for a single example."""
    params, x, _, h0 = make_problem(seed, N=1)
    h = ref_hidden(params, x, h0)[:, 0]
    return params, x[:, 0], np.concatenate([h0, h])


def h_t_from_h_k(params, x1, h_k, t, k):
    """Re-run the recurrence from h(k) to h(t): x1[s-1] is x(s)."""
    h_s = h_k
    for s in range(k + 1, t + 1):
        h_s = np.tanh(params["b"] + params["W"] @ h_s + params["U"] @ x1[s - 1])
    return h_s


@pytest.mark.parametrize("t,k", [(2, 2), (3, 2), (4, 1), (5, 2)])
def test_hidden_jacobian_vs_central_differences(t, k):
    params, x1, h = one_sequence(29)
    assert not np.allclose(params["W"], params["W"].T)  # layout errors would show
    J = R.hidden_jacobian(h, params["W"], t, k)
    assert J.shape == (H, H)
    eps = 1e-6
    J_num = np.empty((H, H))
    for j in range(H):  # column j: response of h(t) to component j of h(k)
        e = np.zeros(H)
        e[j] = eps
        J_num[:, j] = (h_t_from_h_k(params, x1, h[k] + e, t, k)
                       - h_t_from_h_k(params, x1, h[k] - e, t, k)) / (2 * eps)
    assert relative_error(J, J_num) < GRAD_TOL
    if t == k:
        np.testing.assert_array_equal(J, np.eye(H))


def test_hidden_jacobian_agrees_with_bptt():
    # A gradient row g on h(t) alone reaches h0 as g dh(t)/dh(0).
    params, x1, h = one_sequence(30)
    t = 4
    g = np.random.default_rng(31).standard_normal(H)
    _, cache = R.rnn_forward(x1[:, None, :], h[:1], params["U"], params["W"], params["b"])
    dh = np.zeros((T, 1, H))
    dh[t - 1, 0] = g  # dh[t-1] is the gradient on h(t)
    _, dh0, *_ = R.rnn_backward(dh, cache)
    np.testing.assert_allclose(dh0[0], g @ R.hidden_jacobian(h, params["W"], t, 0),
                               rtol=1e-12, atol=1e-14)


def test_hidden_jacobian_rejects_bad_indices_and_keeps_inputs():
    params, _, h = one_sequence(32)
    before = snapshot((h, params["W"]))
    R.hidden_jacobian(h, params["W"], T, 0)
    assert_same((h, params["W"]), before)
    with pytest.raises(ValueError):
        R.hidden_jacobian(h, params["W"], 1, 2)
    with pytest.raises(ValueError):
        R.hidden_jacobian(h, params["W"], T + 1, 0)


# ----------------------------------------------------------------------------
# Sequences in practice: the masked loss


def loop_masked_loss(logits, y, mask):
    """J = sum over real steps of -log softmax / N, by loops and logsumexp."""
    Tn, Nn = y.shape
    J = 0.0
    for t in range(Tn):
        for n in range(Nn):
            if mask[t, n]:
                o = logits[t, n]
                m = o.max()
                J += (m + math.log(np.exp(o - m).sum()) - o[y[t, n]]) / Nn
    return J


def random_masked_batch(seed, lengths=(5, 3, 1, 4), scale=2.0):
    """Sequences of the given lengths padded to the longest: mask[t, n] = t < lengths[n]."""
    rng = np.random.default_rng(seed)
    Tn, Nn = max(lengths), len(lengths)
    logits = scale * rng.standard_normal((Tn, Nn, K))
    y = rng.integers(0, K, size=(Tn, Nn))
    mask = np.arange(Tn)[:, None] < np.array(lengths)[None, :]
    return logits, y, mask


def test_masked_loss_by_hand():
    # Step 1: example 0 has logits (0, 0), label 0 -> ln 2; example 1 has
    # (ln 3, 0), label 1 -> -ln(1/4) = ln 4.  Step 2: example 0 has (0, ln 3),
    # label 1 -> ln(4/3); example 1 is padding.  Divide every step by N = 2:
    # J = (ln 2 + ln 4)/2 + ln(4/3)/2 = (5 ln 2 - ln 3) / 2.
    l3 = math.log(3.0)
    logits = np.array([[[0.0, 0.0], [l3, 0.0]],
                       [[0.0, l3], [5.0, -5.0]]])
    y = np.array([[0, 1], [1, 0]])
    mask = np.array([[True, True], [True, False]])
    loss, dlogits = R.masked_temporal_softmax_cross_entropy(logits, y, mask)
    assert isinstance(loss, float)
    assert loss == pytest.approx((5 * math.log(2.0) - l3) / 2, rel=1e-14)
    # (softmax - onehot) / 2 on the real steps, zero on the padded one
    want = np.array([[[-0.25, 0.25], [0.375, -0.375]],
                     [[0.125, -0.125], [0.0, 0.0]]])
    np.testing.assert_allclose(dlogits, want, rtol=1e-14, atol=1e-16)


def test_masked_loss_all_true_equals_unmasked_loss():
    rng = np.random.default_rng(40)
    logits = 3.0 * rng.standard_normal((T, N, K))
    y = rng.integers(0, K, size=(T, N))
    loss, dlogits = R.masked_temporal_softmax_cross_entropy(logits, y, np.ones((T, N), dtype=bool))
    want_loss, want_d = R.temporal_softmax_cross_entropy(logits, y)
    assert loss == pytest.approx(want_loss, rel=1e-13)
    assert loss == pytest.approx(loop_masked_loss(logits, y, np.ones((T, N), bool)), rel=1e-12)
    np.testing.assert_allclose(dlogits, want_d, rtol=1e-13, atol=1e-16)


def test_masked_loss_matches_loops_and_divides_by_the_batch_size():
    logits, y, mask = random_masked_batch(41)
    loss, _ = R.masked_temporal_softmax_cross_entropy(logits, y, mask)
    assert loss == pytest.approx(loop_masked_loss(logits, y, mask), rel=1e-12)
    # Each sequence scored alone over its own length, divided by the batch size N:
    lengths, Nn = mask.sum(axis=0), mask.shape[1]
    alone = sum(R.temporal_softmax_cross_entropy(logits[:L, n:n + 1], y[:L, n:n + 1])[0]
                for n, L in enumerate(lengths)) / Nn
    assert loss == pytest.approx(alone, rel=1e-12)
    # ... which is not what dividing by the number of real entries would give.
    per_entry = loop_masked_loss(logits, y, mask) * Nn / mask.sum()
    assert abs(loss - per_entry) > 1e-2


def test_masked_loss_gradient_vs_central_differences():
    # logits of order 1: no class so unlikely that rounding dominates its central difference
    logits, y, mask = random_masked_batch(42, scale=1.0)
    _, dlogits = R.masked_temporal_softmax_cross_entropy(logits, y, mask)
    num = numerical_gradient(lambda: loop_masked_loss(logits, y, mask), logits)
    assert relative_error(dlogits, num) < GRAD_TOL
    # Central differences are exactly 0 on the padding: nothing there reaches the loss.
    np.testing.assert_array_equal(num[~mask], 0.0)
    np.testing.assert_array_equal(dlogits[~mask], 0.0)


def test_padded_steps_change_neither_loss_nor_gradient():
    logits, y, mask = random_masked_batch(43)
    loss, dlogits = R.masked_temporal_softmax_cross_entropy(logits, y, mask)
    rng = np.random.default_rng(44)
    other_logits, other_y = logits.copy(), y.copy()
    other_logits[~mask] = 50.0 * rng.standard_normal((int((~mask).sum()), K))
    other_y[~mask] = rng.integers(0, K, size=int((~mask).sum()))
    loss2, dlogits2 = R.masked_temporal_softmax_cross_entropy(other_logits, other_y, mask)
    assert loss2 == loss
    np.testing.assert_array_equal(dlogits2, dlogits)
    # Labels on padding may be a padding id outside [0, K), e.g. -1.
    other_y[~mask] = -1
    loss3, dlogits3 = R.masked_temporal_softmax_cross_entropy(other_logits, other_y, mask)
    assert loss3 == loss
    np.testing.assert_array_equal(dlogits3, dlogits)


def test_masked_loss_large_logits_closed_form():
    # Real step: label 1 has logit 0 against 1000 -> loss 1000 (then / N = 2).
    # Padded step: label 0 loses by 2000, which must not count.
    logits = np.array([[[1000.0, 0.0], [0.0, 2000.0]]])
    y = np.array([[1, 0]])
    mask = np.array([[True, False]])
    loss, dlogits = R.masked_temporal_softmax_cross_entropy(logits, y, mask)
    assert loss == pytest.approx(500.0, rel=1e-15)
    np.testing.assert_allclose(dlogits, [[[0.5, -0.5], [0.0, 0.0]]], atol=1e-15)


def test_masked_loss_does_not_mutate_inputs():
    logits, y, mask = random_masked_batch(45)
    before = snapshot((logits, y, mask))
    R.masked_temporal_softmax_cross_entropy(logits, y, mask)
    assert_same((logits, y, mask), before)


# ----------------------------------------------------------------------------
# Sequences in practice: contiguous streams


def test_batchify_by_hand():
    # 11 ids, 3 streams: L = 3, id 9 and 10 dropped; stream n = ids[3n:3n+3].
    got = R.batchify(np.arange(11), 3)
    np.testing.assert_array_equal(got, [[0, 3, 6], [1, 4, 7], [2, 5, 8]])


@pytest.mark.parametrize("M, Nn", [(100, 7), (64, 8), (5, 1), (6, 6), (13, 4)])
def test_batchify_matches_loops(M, Nn):
    ids = np.random.default_rng(M + Nn).integers(0, 50, size=M)
    before = ids.copy()
    got = R.batchify(ids, Nn)
    L = M // Nn
    assert got.shape == (L, Nn) and got.dtype == ids.dtype
    for n in range(Nn):
        for t in range(L):
            assert got[t, n] == ids[n * L + t]
    # Every stream is a contiguous piece: the id after row t is the next id of the text.
    for n in range(Nn):
        start = n * L
        np.testing.assert_array_equal(got[:, n], ids[start:start + L])
    assert_same(ids, before)
    assert not np.shares_memory(got, ids)


def test_batchify_rejects_bad_arguments():
    with pytest.raises(ValueError):
        R.batchify(np.arange(10), 0)
    with pytest.raises(ValueError):
        R.batchify(np.arange(10), -2)
    with pytest.raises(ValueError):
        R.batchify(np.arange(3), 4)       # L = 0
    with pytest.raises(ValueError):
        R.batchify(np.arange(12).reshape(3, 4), 2)


# ----------------------------------------------------------------------------
# Sequences in practice: sampling


def cyclic_model():
    """K = H = 3, W = 0: input id k makes id (k + 1) % 3 by far the most likely next id."""
    perm = np.roll(np.eye(3), 1, axis=0)  # perm @ e_k = e_{(k+1) % 3}
    return {"U": 5.0 * np.eye(3), "W": np.zeros((3, 3)), "b": np.zeros(3),
            "V": 10.0 * perm, "c": np.zeros(3)}


def alternating_model():
    """H = 1, inputs ignored (U = 0), W = -3 flips the sign of h at every step;
    V = (1, -1) makes class 0 win when h > 0 and class 1 when h < 0."""
    return {"U": np.zeros((1, 2)), "W": np.array([[-3.0]]), "b": np.zeros(1),
            "V": np.array([[1.0], [-1.0]]), "c": np.zeros(2)}


def test_sample_greedy_feeds_each_id_back_and_draws_nothing():
    rng = np.random.default_rng(50)
    state = copy.deepcopy(rng.bit_generator.state)
    ids = R.sample(cyclic_model(), np.zeros(3), 0, 7, rng, temperature=0)
    assert ids.shape == (7,) and np.issubdtype(ids.dtype, np.integer)
    # x0 = 0 -> 1 -> 2 -> 0 ...; a sampler that kept feeding x0 would repeat 1.
    np.testing.assert_array_equal(ids, [1, 2, 0, 1, 2, 0, 1])
    assert rng.bit_generator.state == state


def test_sample_greedy_carries_the_hidden_state_from_h0():
    # h0 = 0.5: h(1) = tanh(-1.5) < 0 -> 1, h(2) = tanh(-3 h(1)) > 0 -> 0, ...
    ids = R.sample(alternating_model(), np.array([0.5]), 0, 6, np.random.default_rng(0), 0.0)
    np.testing.assert_array_equal(ids, [1, 0, 1, 0, 1, 0])
    # Restarting every step from h0 would give 1, 1, 1, ...; from -0.5 the run starts with 0.
    ids = R.sample(alternating_model(), np.array([-0.5]), 1, 4, np.random.default_rng(0), 0.0)
    np.testing.assert_array_equal(ids, [0, 1, 0, 1])


def loop_sample(params, h0, x0, Tn, rng, temperature):
    """Independent sampler: column-vector math, one draw per step from rng."""
    K_ = params["V"].shape[0]
    h, x_id, out = np.array(h0, dtype=float), x0, []
    for _ in range(Tn):
        h = np.tanh(params["b"] + params["W"].dot(h) + params["U"][:, x_id])
        o = params["c"] + params["V"].dot(h)
        if temperature == 0:
            x_id = int(np.argmax(o))
        else:
            z = o / temperature
            p = np.exp(z - z.max())
            x_id = int(rng.choice(K_, p=p / p.sum()))
        out.append(x_id)
    return out


def char_model(seed, Kc=6, Hc=5, scale=1.5):
    rng = np.random.default_rng(seed)
    return {"U": scale * rng.standard_normal((Hc, Kc)), "W": scale * rng.standard_normal((Hc, Hc)),
            "b": 0.3 * rng.standard_normal(Hc), "V": 2 * scale * rng.standard_normal((Kc, Hc)),
            "c": 0.3 * rng.standard_normal(Kc)}, 0.5 * rng.standard_normal(Hc)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sample_replays_one_draw_per_step(temperature):
    params, h0 = char_model(51)
    before = snapshot((params, h0))
    rng = np.random.default_rng(52)
    replay = copy.deepcopy(rng)
    ids = R.sample(params, h0, 2, 40, rng, temperature)
    want = loop_sample(params, h0, 2, 40, replay, temperature)
    np.testing.assert_array_equal(ids, want)
    # Exactly 40 draws: the generator is where the replay left its copy.
    assert rng.bit_generator.state == replay.bit_generator.state
    assert_same((params, h0), before)
    assert len(set(ids.tolist())) > 2   # a real sample, not a constant run


def test_sample_temperature_divides_the_logits():
    # Logits that do not depend on the state or the input: o = c = log(0.7, 0.2, 0.1).
    # At temperature tau the draws follow softmax(c / tau) = p^(1/tau), normalised.
    p = np.array([0.7, 0.2, 0.1])
    params = {"U": np.zeros((2, 3)), "W": np.zeros((2, 2)), "b": np.zeros(2),
              "V": np.zeros((3, 2)), "c": np.log(p)}
    for tau in (0.5, 1.0, 3.0):
        q = p ** (1 / tau) / np.sum(p ** (1 / tau))
        rng = np.random.default_rng(53)
        replay = copy.deepcopy(rng)
        ids = R.sample(params, np.zeros(2), 0, 200, rng, tau)
        np.testing.assert_array_equal(ids, [replay.choice(3, p=q) for _ in range(200)])
    # Low temperatures sharpen, high ones flatten: the share of the likeliest id falls.
    shares = [np.mean(R.sample(params, np.zeros(2), 0, 4000, np.random.default_rng(54), tau) == 0)
              for tau in (0.25, 1.0, 4.0)]
    assert shares[0] > 0.95 and abs(shares[1] - 0.7) < 0.03 and shares[2] < 0.5


def test_sample_tiny_temperature_is_greedy():
    params, h0 = char_model(55)
    greedy = R.sample(params, h0, 1, 30, np.random.default_rng(0), 0)
    np.testing.assert_array_equal(greedy, loop_sample(params, h0, 1, 30, None, 0))
    cold = R.sample(params, h0, 1, 30, np.random.default_rng(56), 1e-6)
    np.testing.assert_array_equal(cold, greedy)


def test_sample_edge_cases():
    params, h0 = char_model(57)
    rng = np.random.default_rng(58)
    state = copy.deepcopy(rng.bit_generator.state)
    ids = R.sample(params, h0, 0, 0, rng)
    assert ids.shape == (0,) and rng.bit_generator.state == state
    with pytest.raises(ValueError):
        R.sample(params, h0, 0, 5, rng, temperature=-1.0)


# ----------------------------------------------------------------------------
# Bits per character


def test_bits_per_char_by_hand():
    # K = 4 with equal logits: every prediction costs log2 4 = 2 bits, padding or not
    logits = np.zeros((3, 2, 4))
    y = np.array([[0, 1], [2, 3], [1, 9]])           # 9 sits at a padded step: ignored
    mask = np.array([[True, True], [True, True], [True, False]])
    bits, perplexity = R.bits_per_char(logits, y, mask)
    assert bits == pytest.approx(2.0, rel=1e-14) and perplexity == pytest.approx(4.0, rel=1e-14)
    assert isinstance(bits, float) and isinstance(perplexity, float)


def test_bits_per_char_averages_over_the_real_steps_only():
    # one real step predicted with p = 1/2 (1 bit), one with p = 1/8 (3 bits): mean 2 bits
    logits = np.log(np.array([[[0.5, 0.5]], [[0.125, 0.875]], [[0.5, 0.5]]]))
    y = np.array([[0], [0], [1]])
    mask = np.array([[True], [True], [False]])
    assert R.bits_per_char(logits, y, mask)[0] == pytest.approx(2.0, rel=1e-12)
    assert R.bits_per_char(logits[:2], y[:2])[0] == pytest.approx(2.0, rel=1e-12)
    with pytest.raises(ValueError):
        R.bits_per_char(logits, y, np.zeros_like(mask))


def test_draw_next_by_hand():
    logits = np.log(np.array([0.1, 0.2, 0.7]))
    assert R.draw_next(logits, np.random.default_rng(0), 0.0) == 2     # greedy: the argmax
    g = np.random.default_rng(3)
    got = R.draw_next(logits, g, 1.0)
    h = np.random.default_rng(3)
    assert got == h.choice(3, p=[0.1, 0.2, 0.7])                      # one draw, same numbers
    assert g.random() == h.random()
    # temperature 1/2 squares the probabilities: (0.01, 0.04, 0.49) / 0.54
    h = np.random.default_rng(4)
    assert R.draw_next(logits, np.random.default_rng(4), 0.5) == h.choice(
        3, p=np.array([0.01, 0.04, 0.49]) / 0.54)
    with pytest.raises(ValueError):
        R.draw_next(logits, np.random.default_rng(0), -1.0)
