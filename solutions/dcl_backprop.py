"""Chapter 1: densely connected layers and backpropagation.

Conventions (see the book's notation page): float64, batch-first data
``x (N, D_in)``, weights shaped like the math ``W (D_out, D_in)``, so an
affine map is ``z = x @ W.T + b``.  A layer's forward returns ``(out,
cache)``; its backward takes ``(dout, cache)`` and returns the gradients of
the inputs first, then of the parameters.  ``delta`` is dJ/dz, the error of a
layer's pre-activation.
"""
import numpy as np

# The only graded function that may change an argument: it perturbs x in
# place and must restore it (the grader gives that change back to the checks).
MUTATES = {"numerical_gradient": ("x",)}


# ----------------------------------------------------------------------------
# Activations and their derivatives


def sigmoid(z):
    """Logistic function 1 / (1 + e^-z), elementwise.

    z: array of any shape -> array of the same shape.

    Accurate to a few units in the last place wherever the result is a
    normal float (z from about -708 up), and no overflow warning for any z.
    """
    # e^-z overflows for z << 0; there the equivalent e^z / (1 + e^z) has an
    # exponent that is never positive.
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    s = np.asarray(1.0 / (1.0 + e))  # sigmoid(|z|)
    # For z < 0: e^z / (1 + e^z) = e * sigmoid(|z|), accurate far into the tail.
    np.copyto(s, e * s, where=z < 0)
    return s


def relu(z):
    """max(0, z), elementwise. z: any shape -> same shape."""
    return np.maximum(np.asarray(z, dtype=np.float64), 0.0)


def sigmoid_grad(z):
    """d sigmoid / dz = sigmoid(z) (1 - sigmoid(z)), evaluated at z."""
    s = sigmoid(z)
    return s * (1.0 - s)


def tanh_grad(z):
    """d tanh / dz = 1 - tanh(z)^2, evaluated at z."""
    t = np.tanh(np.asarray(z, dtype=np.float64))
    return 1.0 - t * t


def relu_grad(z):
    """d relu / dz: 1 where z > 0, else 0 (we choose relu'(0) = 0)."""
    return (np.asarray(z, dtype=np.float64) > 0).astype(np.float64)


# ----------------------------------------------------------------------------
# The dense (affine) layer


def dense_forward(x, W, b):
    """Affine map z = x W^T + b.

    x: (N, D_in), W: (D_out, D_in), b: (D_out,) -> z: (N, D_out), cache.
    """
    z = x @ W.T + b
    return z, (x, W)


def dense_backward(dz, cache):
    """Backward pass of ``dense_forward``.

    dz: (N, D_out) = dJ/dz -> dx (N, D_in), dW (D_out, D_in), db (D_out,):
    the gradients of J with respect to x, W and b.
    """
    x, W = cache
    dx = dz @ W
    dW = dz.T @ x
    db = dz.sum(axis=0)
    return dx, dW, db


# ----------------------------------------------------------------------------
# Output layers and losses


def softmax(z):
    """Softmax over the last axis. z: (..., K), e.g. (N, K) -> the same shape,
    summing to 1 over the last axis.

    Subtracting the row maximum leaves the result unchanged (it cancels in
    the ratio) and keeps every exponent <= 0, so nothing overflows.
    """
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
    """Log softmax over the last axis, z - logsumexp(z), computed stably.

    z: (..., K), e.g. (N, K) -> the same shape.
    """
    z = np.asarray(z, dtype=np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits, y):
    """Mean softmax cross-entropy and its gradient.

    logits: (N, K), y: (N,) integer labels in [0, K)
    -> loss (float) J = -(1/N) sum_n log softmax(logits)[n, y_n],
       dlogits (N, K) = dJ/dlogits.

    Finite for any finite logits (1000 included).
    """
    N = logits.shape[0]
    rows = np.arange(N)
    loss = -log_softmax(logits)[rows, y].mean()
    dlogits = softmax(logits)
    dlogits[rows, y] -= 1.0
    return float(loss), dlogits / N


def bce_with_logits(z, y):
    """Mean binary cross-entropy of labels y in {0, 1} given logits z, and its gradient.

    z: (N,) or (N, 1); y: same shape
    -> loss (float) J = -(1/N) sum [y log s(z) + (1 - y) log(1 - s(z))],
       dz (same shape as z) = dJ/dz.

    Finite for any finite z (±1000 included).
    """
    # J = (1/N) sum [max(z, 0) - z y + log(1 + e^-|z|)] never takes the log
    # of 0 or exponentiates a large number.
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    N = z.shape[0]
    loss = np.sum(np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))) / N
    return float(loss), (sigmoid(z) - y) / N


# ----------------------------------------------------------------------------
# Gradient checking


def numerical_gradient(f, x, eps=1e-6):
    """Central-difference gradient of the scalar f() with respect to x.

    f: function of no arguments that reads x; x: float array of any shape,
    perturbed in place one entry at a time (by +eps and -eps) and restored
    exactly -> array shaped like x.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        f_plus = f()
        x[i] = old - eps
        f_minus = f()
        x[i] = old  # restore exactly: the caller keeps using x
        grad[i] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def relative_error(a, b):
    """max over elements of |a - b| / max(1e-8, |a| + |b|), as a Python float."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


# ----------------------------------------------------------------------------
# A two-layer network


def mlp_loss_and_grads(params, x, y):
    """Loss and gradients of a two-layer tanh network with softmax output.

    params: W1 (H, D), b1 (H,), W2 (K, H), b2 (K,); x: (N, D); y: (N,) ints
    -> loss (float), grads (dict with the keys of params).

        a1 = x W1^T + b1,  h = tanh(a1),  logits = h W2^T + b2
    """
    a1, cache1 = dense_forward(x, params["W1"], params["b1"])
    h = np.tanh(a1)
    logits, cache2 = dense_forward(h, params["W2"], params["b2"])
    loss, dlogits = softmax_cross_entropy(logits, y)

    dh, dW2, db2 = dense_backward(dlogits, cache2)
    delta1 = dh * (1.0 - h * h)  # tanh'(a1) from the cached h
    _, dW1, db1 = dense_backward(delta1, cache1)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


# ----------------------------------------------------------------------------
# Optimizers.  Each returns new arrays; params, grads and state are not mutated.


def sgd_step(params, grads, lr):
    """p <- p - lr g for every key. -> new_params."""
    return {k: params[k] - lr * grads[k] for k in params}


def momentum_step(params, grads, state, lr, beta=0.9):
    """v <- beta v + (1 - beta) g;  p <- p - lr v.

    state: dict, empty on the first call (v starts at 0) -> (new_params, new_state).
    """
    v_old = state.get("v", {k: np.zeros_like(p) for k, p in params.items()})
    v = {k: beta * v_old[k] + (1.0 - beta) * grads[k] for k in params}
    return {k: params[k] - lr * v[k] for k in params}, {"v": v}


def rmsprop_step(params, grads, state, lr, beta=0.9, eps=1e-8):
    """s <- beta s + (1 - beta) g^2;  p <- p - lr g / (sqrt(s) + eps).

    -> (new_params, new_state); s starts at 0.
    """
    s_old = state.get("s", {k: np.zeros_like(p) for k, p in params.items()})
    s = {k: beta * s_old[k] + (1.0 - beta) * grads[k] ** 2 for k in params}
    new = {k: params[k] - lr * grads[k] / (np.sqrt(s[k]) + eps) for k in params}
    return new, {"s": s}


def adam_step(params, grads, state, lr, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0):
    """Adam with bias correction; AdamW (decoupled decay) when weight_decay > 0.

        t <- t + 1
        m <- beta1 m + (1 - beta1) g          m_hat = m / (1 - beta1^t)
        v <- beta2 v + (1 - beta2) g^2        v_hat = v / (1 - beta2^t)
        p <- p - lr (m_hat / (sqrt(v_hat) + eps) + weight_decay p)

    state: dict with keys t, m, v (empty on the first call) -> (new_params, new_state).
    """
    t = state.get("t", 0) + 1
    zeros = {k: np.zeros_like(p) for k, p in params.items()}
    m_old, v_old = state.get("m", zeros), state.get("v", zeros)
    m = {k: beta1 * m_old[k] + (1.0 - beta1) * grads[k] for k in params}
    v = {k: beta2 * v_old[k] + (1.0 - beta2) * grads[k] ** 2 for k in params}
    new = {}
    for k, p in params.items():
        m_hat = m[k] / (1.0 - beta1 ** t)
        v_hat = v[k] / (1.0 - beta2 ** t)
        new[k] = p - lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * p)
    return new, {"t": t, "m": m, "v": v}


# ----------------------------------------------------------------------------
# Regularisation


def dropout_forward(x, p, rng, train=True):
    """Inverted dropout with drop probability p.

    x: array of any shape, e.g. (N, H); p: float in [0, 1);
    rng: numpy.random.Generator; train: bool -> out (shape of x), cache.

    Training: draws exactly one array u = rng.random(x.shape), keeps the
    entries of x where u >= p, multiplied by 1 / (1 - p), and sets the others
    to 0.  Evaluation (train=False): out equals x, nothing is drawn, and
    ``dropout_backward`` with this cache returns dout unchanged.
    Raises ValueError if p is not in [0, 1).
    """
    if not 0.0 <= p < 1.0:  # also rejects nan
        raise ValueError(f"dropout: drop probability p must be in [0, 1), got {p!r}")
    x = np.asarray(x, dtype=np.float64)
    if not train:
        return x.copy(), 1.0  # a scale of 1: the backward pass is the identity
    u = rng.random(x.shape)  # one draw per entry: every example gets its own mask
    scale = (u >= p) / (1.0 - p)  # 1/(1-p) on kept units keeps E[out] = x
    return x * scale, scale


def dropout_backward(dout, cache):
    """Backward pass of ``dropout_forward``.

    dout: (shape of out) = dJ/dout -> dx (same shape).
    """
    scale = cache
    return np.asarray(dout, dtype=np.float64) * scale


def l2_penalty(params, lam):
    """L2 penalty on the weights and its gradient.

    params: dict of arrays; the weights are the keys starting with "W",
    every other key (the biases) is not penalised; lam: float >= 0
    -> penalty (Python float) = (lam / 2) * (sum over weights of the sum of
    their squared entries), grads (dict with the keys of params, each array
    shaped like its parameter; zeros for the keys that are not weights).
    """
    penalty, grads = 0.0, {}
    for k, p in params.items():
        p = np.asarray(p, dtype=np.float64)
        if k.startswith("W"):
            penalty += 0.5 * lam * np.sum(p * p)
            grads[k] = lam * p
        else:
            grads[k] = np.zeros_like(p)
    return float(penalty), grads


def early_stopping(state, epoch, val_loss, params, patience):
    """Early stopping, one epoch at a time: keep the best parameters, say when to stop.

    state: dict, empty ({}) at the first epoch, then the new_state returned
    at the epoch before; epoch: int, 1 for the first epoch; val_loss: float,
    the validation loss after this epoch; params: the parameters after this
    epoch; patience: int >= 1, or None (never stop)
    -> (new_state, stop): new_state, a new dict with the keys
       best_loss (the lowest validation loss so far, a float),
       best_epoch (the epoch that reached it; the earliest one if tied) and
       best_params (the params passed at that epoch);
       stop (bool): True once patience epochs have passed since best_epoch
       without a lower validation loss, i.e. epoch - best_epoch >= patience.
    state is not modified.
    """
    if not state or val_loss < state["best_loss"]:  # strictly lower: a tie keeps the earlier epoch
        new = {"best_loss": float(val_loss), "best_epoch": int(epoch), "best_params": params}
    else:
        new = dict(state)
    stop = patience is not None and epoch - new["best_epoch"] >= patience
    return new, bool(stop)


def mlp_dropout_loss_and_grads(params, x, y, p, rng):
    """``mlp_loss_and_grads`` with inverted dropout on the hidden units.

    The network of ``mlp_loss_and_grads`` with h~ = dropout(h) (training
    mode, drop probability p, one draw from rng) between the hidden layer
    and the output layer: logits = h~ W2^T + b2.
    params: W1 (H, D), b1 (H,), W2 (K, H), b2 (K,); x: (N, D); y: (N,) ints;
    p: float in [0, 1); rng: numpy.random.Generator
    -> loss (float), grads (dict with the keys of params).
    (Not graded: it powers the exercise's experiment on over-fitting.)
    """
    a1, cache1 = dense_forward(x, params["W1"], params["b1"])
    h = np.tanh(a1)
    h_kept, cache_drop = dropout_forward(h, p, rng)
    logits, cache2 = dense_forward(h_kept, params["W2"], params["b2"])
    loss, dlogits = softmax_cross_entropy(logits, y)

    dh_kept, dW2, db2 = dense_backward(dlogits, cache2)
    delta1 = dropout_backward(dh_kept, cache_drop) * (1.0 - h * h)
    _, dW1, db1 = dense_backward(delta1, cache1)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
