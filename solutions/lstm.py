"""Chapter 3: the LSTM with peepholes, forward and backward, and the GRU.

Notation of Greff et al., "LSTM: A Search Space Odyssey" (the vanilla LSTM):
block input z, input gate i, forget gate f, output gate o, cell c and block
output y; the equations of one step are in ``lstm_step_forward``'s
docstring, which the exercise notebook shows.  Parameters (a dict; gradient
dicts use the same keys): ``W_z W_i W_f W_o`` (H, D), ``R_z R_i R_f R_o``
(H, H), ``p_i p_f p_o`` (H,), ``b_z b_i b_f b_o`` (H,).  All ``p_*`` = 0 is
the LSTM without peepholes.

The backward pass is derived in the book (chapter 3, "The backward pass as
flows through a graph"; the errors ``delta_*`` are gradients of the loss
with respect to the pre-activations).  Between steps it passes two
messages: step t returns, as ``dy_prev`` and ``dc_prev``, everything that
flows from step t into y(t-1) and into c(t-1).  So the ``dc_t`` argument of
``lstm_step_backward`` is exactly the ``dc_prev`` returned by step t+1 (zero
at the last step), and ``dy_t`` is the *total* gradient on y(t): the
sequence backward passes the upstream gradient at t plus the ``dy_prev`` of
step t+1.  Along the cell the gradient is multiplied by the diagonal
``cell_jacobian_diag``, never by a recurrent weight matrix (chapter 3, "The
cell path: why the gradient survives").
"""
import numpy as np

from solutions.dcl_backprop import sigmoid

GATES = ("z", "i", "f", "o")  # the order in which the stacked weights hold the gates


# ----------------------------------------------------------------------------
# One time step


def lstm_step_forward(x_t, y_prev, c_prev, params):
    """One step of the LSTM with peepholes (chapter 3, "The forward pass").

    x_t: (N, D), y_prev = y(t-1): (N, H), c_prev = c(t-1): (N, H),
    params: dict with W_z W_i W_f W_o (H, D), R_z R_i R_f R_o (H, H),
    p_i p_f p_o (H,) and b_z b_i b_f b_o (H,)
    -> y_t = y(t) (N, H), c_t = c(t) (N, H), cache (what the backward pass needs).

    For one example, with column vectors (``*`` is elementwise)::

        z_bar = W_z x(t) + R_z y(t-1)                + b_z     z = tanh(z_bar)
        i_bar = W_i x(t) + R_i y(t-1) + p_i * c(t-1) + b_i     i = sigmoid(i_bar)
        f_bar = W_f x(t) + R_f y(t-1) + p_f * c(t-1) + b_f     f = sigmoid(f_bar)
        c(t)  = z * i + c(t-1) * f
        o_bar = W_o x(t) + R_o y(t-1) + p_o * c(t)   + b_o     o = sigmoid(o_bar)
        y(t)  = o * tanh(c(t))

    With the examples as rows, W_z x(t) is ``x_t @ W_z.T`` and p_i * c(t-1)
    is ``p_i * c_prev``.  The output gate peeks at the new cell c(t).
    Accurate for all finite inputs, also when the gates saturate
    (pre-activations of several hundred).  Inputs are not modified.
    """
    P = params
    z_bar = x_t @ P["W_z"].T + y_prev @ P["R_z"].T + P["b_z"]
    i_bar = x_t @ P["W_i"].T + y_prev @ P["R_i"].T + P["p_i"] * c_prev + P["b_i"]
    f_bar = x_t @ P["W_f"].T + y_prev @ P["R_f"].T + P["p_f"] * c_prev + P["b_f"]
    z = np.tanh(z_bar)
    i = sigmoid(i_bar)
    f = sigmoid(f_bar)
    c_t = z * i + c_prev * f
    # The output gate peeks at the *new* cell state c(t).
    o_bar = x_t @ P["W_o"].T + y_prev @ P["R_o"].T + P["p_o"] * c_t + P["b_o"]
    o = sigmoid(o_bar)
    tanh_c = np.tanh(c_t)
    y_t = o * tanh_c
    cache = (x_t, y_prev, c_prev, z, i, f, o, c_t, tanh_c, params)
    return y_t, c_t, cache


def lstm_step_backward(dy_t, dc_t, cache):
    """Backward pass of ``lstm_step_forward`` (derived in chapter 3, "The
    backward pass as flows through a graph").

    dy_t: (N, H), the total gradient on y(t): what the loss at step t sends
        to y(t) plus the ``dy_prev`` that step t+1 returned.
    dc_t: (N, H), what step t+1 sends to c(t): the ``dc_prev`` that step t+1
        returned (zeros at the last step).  It is complete: this step adds
        what reaches c(t) within step t and never rescales dc_t.
    cache: from ``lstm_step_forward``.
    -> dx_t (N, D), the gradient on x(t);
       dy_prev (N, H), everything that flows from step t into y(t-1);
       dc_prev (N, H), everything that flows from step t into c(t-1)
       (the messages for step t-1);
       grads, a dict with exactly the keys of params: this step's
       contribution to each parameter's gradient, shaped like the parameter.
    Accurate also when the gates saturate.  Inputs are not modified.
    """
    x_t, y_prev, c_prev, z, i, f, o, c_t, tanh_c, P = cache
    delta_y = dy_t
    # Derivatives of the activations are written with their outputs:
    # sigmoid' = s (1 - s), tanh' = 1 - tanh^2.
    delta_o = delta_y * tanh_c * o * (1.0 - o)
    delta_c = delta_y * o * (1.0 - tanh_c ** 2) + P["p_o"] * delta_o + dc_t
    delta_z = delta_c * i * (1.0 - z ** 2)
    delta_i = delta_c * z * i * (1.0 - i)
    delta_f = delta_c * c_prev * f * (1.0 - f)

    deltas = {"z": delta_z, "i": delta_i, "f": delta_f, "o": delta_o}
    dx_t = sum(deltas[g] @ P["W_" + g] for g in GATES)
    dy_prev = sum(deltas[g] @ P["R_" + g] for g in GATES)
    dc_prev = delta_c * f + P["p_i"] * delta_i + P["p_f"] * delta_f

    grads = {}
    for g in GATES:
        grads["W_" + g] = deltas[g].T @ x_t
        grads["R_" + g] = deltas[g].T @ y_prev
        grads["b_" + g] = deltas[g].sum(axis=0)
    # Each peephole weight scales one unit's cell value, so its gradient is
    # the batch sum of delta * (the cell value it looked at).
    grads["p_i"] = (delta_i * c_prev).sum(axis=0)
    grads["p_f"] = (delta_f * c_prev).sum(axis=0)
    grads["p_o"] = (delta_o * c_t).sum(axis=0)
    return dx_t, dy_prev, dc_prev, grads


def cell_jacobian_diag(x_t, y_prev, c_prev, params):
    """The diagonal of the Jacobian dc(t)/dc(t-1), with x(t) and y(t-1) held
    fixed (derived in chapter 3, "The cell path: why the gradient survives").

    x_t: (N, D), y_prev: (N, H), c_prev: (N, H), params as in
    ``lstm_step_forward`` -> (N, H), entry [n, k] = dc_k(t)/dc_k(t-1) of
    example n.  Unit k's cell reads only its own c_k(t-1), so the other
    entries of the Jacobian are zero.  Accurate also when the gates
    saturate.  Inputs are not modified.
    """
    _, _, cache = lstm_step_forward(x_t, y_prev, c_prev, params)
    _, _, _, z, i, f, _, _, _, P = cache
    return f + P["p_f"] * c_prev * f * (1.0 - f) + P["p_i"] * z * i * (1.0 - i)


# ----------------------------------------------------------------------------
# A whole sequence


def _stack(params, prefix):
    """[X_z; X_i; X_f; X_o] along the first axis, e.g. W: (4H, D)."""
    return np.concatenate([params[prefix + g] for g in GATES])


def lstm_forward(x, y0, c0, params):
    """Run the LSTM over a whole sequence.

    x: (T, N, D), y0 = y(0): (N, H), c0 = c(0): (N, H), params as in
    ``lstm_step_forward`` -> y (T, N, H) with y[t-1] = y(t) for t = 1..T
    (y0 not included), cache.

    Step t applies the equations of ``lstm_step_forward`` to x(t), y(t-1)
    and c(t-1); the cell states are carried from step to step but not
    returned.  Accurate also when the gates saturate.  Inputs are not
    modified.
    """
    # The same equations, organised for speed: the four gates' weights are
    # stacked, W = [W_z; W_i; W_f; W_o] (4H, D) and likewise R (4H, H), so the
    # input part W x(t) + b of every pre-activation at every step is one
    # matrix product before the loop, and the recurrence is one
    # (N, H) x (H, 4H) product per step.
    T, N, D = x.shape
    H = y0.shape[1]
    W, R, b = _stack(params, "W_"), _stack(params, "R_"), _stack(params, "b_")
    p_if = np.stack([params["p_i"], params["p_f"]])  # (2, H)
    p_o = params["p_o"]

    # Input part of every pre-activation at every step, viewed as
    # (T, N, 4, H) with index 0..3 = z, i, f, o.
    a_x = x.reshape(T * N, D) @ W.T
    a_x += b
    a_x = a_x.reshape(T, N, 4, H)

    # Stored gate-major, so that z, i, f, o of a step are contiguous (N, H)
    # blocks: NumPy is faster on those than on strided column blocks.
    gates = np.empty((T, 4, N, H))
    # ys[t] = y(t) and cs[t] = c(t) for t = 0..T: the initial states sit in
    # front, so ys[:-1] is y(t-1) for every step without a copy.
    ys = np.empty((T + 1, N, H))
    cs = np.empty((T + 1, N, H))
    ys[0], cs[0] = y0, c0
    tanh_c = np.empty((T, N, H))

    for t in range(T):
        y_prev, c_prev, c_t = ys[t], cs[t], cs[t + 1]
        z, i, f, o = gates[t]  # views: writing them fills the cache
        a = (y_prev @ R.T).reshape(N, 4, H)
        a += a_x[t]
        a[:, 1:3] += p_if * c_prev[:, None, :]  # input and forget gates peek at c(t-1)
        np.tanh(a[:, 0], out=z)
        gates[t, 1:3] = sigmoid(a[:, 1:3]).swapaxes(0, 1)  # i and f in one call
        np.multiply(z, i, out=c_t)
        c_t += c_prev * f
        o[...] = sigmoid(a[:, 3] + p_o * c_t)  # the output gate peeks at c(t)
        np.tanh(c_t, out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=ys[t + 1])

    cache = (x, ys, cs, gates, tanh_c, W, R, params)
    y = ys[1:].copy()  # a copy, so that editing y cannot corrupt the cache
    return y, cache


def lstm_backward(dy, cache):
    """Backpropagation through time for ``lstm_forward``.

    dy: (T, N, H), dy[t-1] = the gradient that reaches y(t) from outside the
        recurrence (from a read-out layer at step t, say).
    cache: from ``lstm_forward``.
    -> dx (T, N, D) with dx[t-1] the gradient on x(t);
       dy0 (N, H) and dc0 (N, H), the gradients on y(0) and c(0);
       grads, a dict with exactly the keys of params.  The parameters are
       shared by all steps, so each gradient is the sum over t = 1..T of
       the steps' contributions.

    The messages flow as in ``lstm_step_backward``: walking back from t = T,
    step t receives dy[t-1] plus the dy_prev of step t+1 on y(t) and the
    dc_prev of step t+1 on c(t) (zeros after the last step); the pair that
    step 1 sends back is (dy0, dc0).  Accurate also when the gates saturate.
    Inputs are not modified.
    """
    # The recurrence costs one (N, 4H) x (4H, H) product per step; each
    # parameter sum is a single matrix product over the stacked deltas
    # (T*N, 4H) after the loop.
    x, ys, cs, gates, tanh_c, W, R, params = cache
    T, N, D = x.shape
    H = ys.shape[2]
    p_i, p_f, p_o = params["p_i"], params["p_f"], params["p_o"]

    deltas = np.empty((T, N, 4, H))  # delta_z, delta_i, delta_f, delta_o
    dy_prev = np.zeros((N, H))
    dc_prev = np.zeros((N, H))
    for t in reversed(range(T)):
        z, i, f, o = gates[t]
        c_prev = cs[t]  # cs[t] is c(t-1): cs[0] = c0
        delta_y = dy[t] + dy_prev
        delta_o = delta_y * tanh_c[t] * o * (1.0 - o)
        delta_c = delta_y * o * (1.0 - tanh_c[t] ** 2) + p_o * delta_o + dc_prev
        deltas[t, :, 0] = delta_c * i * (1.0 - z ** 2)
        deltas[t, :, 1] = delta_i = delta_c * z * i * (1.0 - i)
        deltas[t, :, 2] = delta_f = delta_c * c_prev * f * (1.0 - f)
        deltas[t, :, 3] = delta_o
        dc_prev = delta_c * f + p_i * delta_i + p_f * delta_f
        dy_prev = deltas[t].reshape(N, 4 * H) @ R

    delta = deltas.reshape(T * N, 4 * H)
    dx = (delta @ W).reshape(T, N, D)
    dW = delta.T @ x.reshape(T * N, D)
    dR = delta.T @ ys[:-1].reshape(T * N, H)  # each step's delta meets y(t-1)
    db = delta.sum(axis=0)

    grads = {}
    for k, g in enumerate(GATES):
        rows = slice(k * H, (k + 1) * H)
        grads["W_" + g] = dW[rows]
        grads["R_" + g] = dR[rows]
        grads["b_" + g] = db[rows]
    # Batch-and-time sums of delta * (the cell value each peephole looked at).
    grads["p_i"] = np.einsum("tnh,tnh->h", deltas[:, :, 1], cs[:-1])
    grads["p_f"] = np.einsum("tnh,tnh->h", deltas[:, :, 2], cs[:-1])
    grads["p_o"] = np.einsum("tnh,tnh->h", deltas[:, :, 3], cs[1:])
    return dx, dy_prev, dc_prev, grads


# ----------------------------------------------------------------------------
# Extension: the gated recurrent unit (GRU)


def gru_step_forward(x_t, h_prev, params):
    """One GRU step.

    x_t: (N, D), h_prev = h(t-1): (N, H), params: W_r W_u W_n (H, D),
    R_r R_u R_n (H, H), b_r b_u b_n (H,) -> h_t (N, H), cache.

        r = sigmoid(W_r x(t) + R_r h(t-1) + b_r)          reset gate
        u = sigmoid(W_u x(t) + R_u h(t-1) + b_u)          update gate
        n = tanh(W_n x(t) + r * (R_n h(t-1)) + b_n)       candidate
        h(t) = (1 - u) * n + u * h(t-1)
    """
    P = params
    r = sigmoid(x_t @ P["W_r"].T + h_prev @ P["R_r"].T + P["b_r"])
    u = sigmoid(x_t @ P["W_u"].T + h_prev @ P["R_u"].T + P["b_u"])
    q = h_prev @ P["R_n"].T  # kept: the reset gate multiplies it, so backward needs it
    n = np.tanh(x_t @ P["W_n"].T + r * q + P["b_n"])
    h_t = (1.0 - u) * n + u * h_prev
    cache = (x_t, h_prev, r, u, n, q, params)
    return h_t, cache


def gru_step_backward(dh_t, cache):
    """Backward pass of ``gru_step_forward``.

    dh_t: (N, H), the total gradient on h(t).
    cache: from ``gru_step_forward``.
    -> dx_t (N, D), the gradient on x(t);
       dh_prev (N, H), the gradient on h(t-1) through every route by which
       h(t-1) reaches h(t);
       grads, a dict with exactly the keys of params.
    Derived the way chapter 3 derives the LSTM's backward pass (section
    "Variants").  Inputs are not modified.
    """
    x_t, h_prev, r, u, n, q, P = cache
    delta_n = dh_t * (1.0 - u) * (1.0 - n ** 2)
    delta_u = dh_t * (h_prev - n) * u * (1.0 - u)
    delta_r = delta_n * q * r * (1.0 - r)
    delta_q = delta_n * r  # gradient on R_n h(t-1)

    dx_t = delta_r @ P["W_r"] + delta_u @ P["W_u"] + delta_n @ P["W_n"]
    # h(t) reads h(t-1) directly (through u) and through all three products.
    dh_prev = dh_t * u + delta_r @ P["R_r"] + delta_u @ P["R_u"] + delta_q @ P["R_n"]
    grads = {
        "W_r": delta_r.T @ x_t, "R_r": delta_r.T @ h_prev, "b_r": delta_r.sum(axis=0),
        "W_u": delta_u.T @ x_t, "R_u": delta_u.T @ h_prev, "b_u": delta_u.sum(axis=0),
        "W_n": delta_n.T @ x_t, "R_n": delta_q.T @ h_prev, "b_n": delta_n.sum(axis=0),
    }
    return dx_t, dh_prev, grads
