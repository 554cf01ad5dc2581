"""Chapter 2: the simple RNN and backpropagation through time (BPTT).

Notation, for one example and one time step t = 1, ..., T:

    a(t) = b + W h(t-1) + U x(t)        h(t) = tanh(a(t))
    o(t) = c + V h(t)                   y_hat(t) = softmax(o(t))

with U (H, D), W (H, H), b (H,), V (K, H), c (K,).  Data is batch-first,
so with the examples of a batch as rows the same equations read
``a = x_t @ U.T + h_prev @ W.T + b`` and ``o = h @ V.T + c``.  Sequences are
time-major: ``x (T, N, D)``, ``h (T, N, H)``, ``logits (T, N, K)``.

The parameters are shared by every time step: there is one U, one W, ...,
not one per step.  What depends on t is the error delta(t) = dJ/da(t), and
the gradient of a parameter is the SUM over t of what each step contributes.

Layout of derivatives.  We use the Jacobian (numerator) layout: dh(t)/dh(k)
is the (H, H) matrix whose row i holds the derivatives of component i of
h(t).  One step back through the recurrence is

    dh(t)/dh(t-1) = diag(1 - h(t)^2) W,

and a gradient stored as a row (the way ``dh`` arrays are stored, one row
per example) travels backward with the Jacobian multiplied on its right:
dJ/dh(t-1) = dJ/dh(t) [dh(t)/dh(t-1)].  In the denominator layout the same
matrix appears transposed, W^T diag(1 - h(t)^2).
"""
import numpy as np

from solutions.dcl_backprop import log_softmax, softmax


# ----------------------------------------------------------------------------
# One time step


def rnn_step_forward(x_t, h_prev, U, W, b):
    """One step of the simple RNN.

    x_t: (N, D), h_prev: (N, H), U: (H, D), W: (H, H), b: (H,)
    -> h_t: (N, H), cache.

        a(t) = b + W h(t-1) + U x(t),   h(t) = tanh(a(t))
    """
    a_t = b + h_prev @ W.T + x_t @ U.T
    h_t = np.tanh(a_t)
    # tanh'(a) = 1 - h^2, so keeping h(t) is enough: a(t) is not needed later.
    return h_t, (x_t, h_prev, h_t, U, W)


def rnn_step_backward(dh_t, cache):
    """Backward pass of ``rnn_step_forward``.

    dh_t: (N, H) = dJ/dh(t), the TOTAL gradient arriving on h(t) (from the
    output at step t and from step t+1); cache from ``rnn_step_forward``
    -> dx_t (N, D) = dJ/dx(t), dh_prev (N, H) = dJ/dh(t-1), and dU (H, D),
    dW (H, H), db (H,): the gradients of J through this step's use of the
    parameters (BPTT adds them up over t).

    The step it differentiates: a(t) = b + W h(t-1) + U x(t), h(t) = tanh(a(t)).
    """
    x_t, h_prev, h_t, U, W = cache
    delta = dh_t * (1.0 - h_t * h_t)
    dx_t = delta @ U
    dh_prev = delta @ W
    dU = delta.T @ x_t
    dW = delta.T @ h_prev
    db = delta.sum(axis=0)
    return dx_t, dh_prev, dU, dW, db


# ----------------------------------------------------------------------------
# A whole sequence


def rnn_forward(x, h0, U, W, b):
    """Run the simple RNN over a sequence (the unfolded graph).

    x: (T, N, D), h0: (N, H), U: (H, D), W: (H, H), b: (H,)
    -> h: (T, N, H) holding h(1), ..., h(T) (h0 is not included), cache.

        h(t) = tanh(b + W h(t-1) + U x(t)),  t = 1, ..., T
    """
    T, N = x.shape[:2]
    h = np.empty((T, N, W.shape[0]), dtype=np.float64)
    step_caches = []
    h_prev = h0
    for t in range(T):
        h[t], step_cache = rnn_step_forward(x[t], h_prev, U, W, b)
        step_caches.append(step_cache)
        h_prev = h[t]
    return h, step_caches


def rnn_backward(dh, cache):
    """Backpropagation through time for ``rnn_forward``.

    dh: (T, N, H), dh[t-1] = the gradient arriving on h(t) from OUTSIDE the
    recurrence (typically from the output layer at step t); cache from
    ``rnn_forward``
    -> dx (T, N, D) with dx[t-1] = dJ/dx(t), dh0 (N, H) = dJ/dh(0),
    dU (H, D), dW (H, H), db (H,).

    h(t) feeds both the output at step t and a(t+1), so the total gradient
    on h(t) is dh[t-1] plus what comes back from step t+1 (nothing comes
    back to h(T)): the loop runs backward in time.  U, W and b are shared by
    every step, so dU, dW, db are totals over all T steps.
    """
    step_caches = cache
    T, (N, D) = len(step_caches), step_caches[0][0].shape
    U, W = step_caches[0][3], step_caches[0][4]
    dx = np.empty((T, N, D), dtype=np.float64)
    dU, dW, db = np.zeros_like(U), np.zeros_like(W), np.zeros(W.shape[0])
    dh_next = np.zeros((N, W.shape[0]))  # nothing comes from beyond h(T)
    for t in reversed(range(T)):
        dx[t], dh_next, dU_t, dW_t, db_t = rnn_step_backward(
            dh[t] + dh_next, step_caches[t])
        dU += dU_t
        dW += dW_t
        db += db_t
    return dx, dh_next, dU, dW, db


# ----------------------------------------------------------------------------
# Output layer and loss


def rnn_logits(h, V, c):
    """Output layer applied at every time step.

    h: (T, N, H), V: (K, H), c: (K,) -> o: (T, N, K),  o(t) = c + V h(t).
    """
    return c + h @ V.T


def temporal_softmax_cross_entropy(logits, y):
    """Softmax cross-entropy summed over time, averaged over the batch.

    logits: (T, N, K), y: (T, N) integer labels in [0, K)
    -> loss (Python float), dlogits (T, N, K) = dJ/dlogits.

        J = sum_t J(t),   J(t) = -(1/N) sum_n log softmax(o(t))[n, y_n(t)]

    Finite and accurate for logits of any size (1000 included): no overflow.
    """
    T, N = y.shape
    t_idx, n_idx = np.meshgrid(np.arange(T), np.arange(N), indexing="ij")
    # Summing over t and averaging over n is one sum divided by N.
    loss = -log_softmax(logits)[t_idx, n_idx, y].sum() / N
    dlogits = softmax(logits)
    dlogits[t_idx, n_idx, y] -= 1.0
    return float(loss), dlogits / N


def rnn_loss_and_grads(params, x, y, h0, mask=None):
    """Many-to-many RNN: forward pass, loss, and full BPTT.

    params: dict with U (H, D), W (H, H), b (H,), V (K, H), c (K,);
    x: (T, N, D), y: (T, N) integer labels, h0: (N, H); mask: None, or
    (T, N) booleans, True at the real steps of a padded batch
    -> loss (float), grads (dict with the keys U W b V c), h_last (N, H) = h(T).

        h(t) = tanh(b + W h(t-1) + U x(t)),  o(t) = c + V h(t),
        J = sum_t J(t) as in ``temporal_softmax_cross_entropy``, or with a
        mask as in ``masked_temporal_softmax_cross_entropy``.
    """
    U, W, b, V, c = (params[k] for k in ("U", "W", "b", "V", "c"))
    h, cache = rnn_forward(x, h0, U, W, b)
    logits = rnn_logits(h, V, c)
    if mask is None:
        loss, do = temporal_softmax_cross_entropy(logits, y)
    else:
        loss, do = masked_temporal_softmax_cross_entropy(logits, y, mask)

    # V and c are shared over time too: sum the per-step dense-layer grads.
    dV = np.einsum("tnk,tnh->kh", do, h)
    dc = do.sum(axis=(0, 1))
    dh = do @ V  # the route from h(t) through o(t) only
    _, _, dU, dW, db = rnn_backward(dh, cache)
    grads = {"U": dU, "W": dW, "b": db, "V": dV, "c": dc}
    return loss, grads, h[-1].copy()


# ----------------------------------------------------------------------------
# Gradient clipping and truncated BPTT


def clip_grad_norm(grads, max_norm):
    """Rescale all gradients together when their global L2 norm is too large.

    grads: dict of arrays; max_norm: positive float
    -> clipped_grads (new dict of new arrays), total_norm_before (float).

        ||g|| = sqrt(sum over every array and entry of g^2)
        g <- g * max_norm / ||g||   only if ||g|| > max_norm

    One factor for every array keeps the direction of the whole gradient;
    only the length of the step changes.  All-zero gradients (norm 0) come
    back as zeros with total_norm_before = 0.0: no division by zero, no nan.
    """
    total_norm = float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))
    scale = max_norm / total_norm if total_norm > max_norm else 1.0
    return {k: g * scale for k, g in grads.items()}, total_norm


def tbptt_train(params, x, y, h0, k, lr, max_norm=None):
    """One pass of truncated BPTT with SGD over a long sequence.

    params: dict U W b V c (as in ``rnn_loss_and_grads``); x: (T, N, D);
    y: (T, N) ints; h0: (N, H); k: chunk length (int >= 1); lr: step size;
    max_norm: None, or the threshold of ``clip_grad_norm``
    -> new_params (new dict), chunk_losses (list of ceil(T/k) Python floats).

    The time axis is cut into consecutive chunks x[0:k], x[k:2k], ... (the
    last may be shorter).  For each chunk, in order:

        loss, g = BPTT on the chunk, starting from the carried state h_init
        g <- clip(g)                           (if max_norm is given)
        theta <- theta - lr g

    h_init is h0 for the first chunk and then the last hidden state of the
    previous chunk's forward pass.  It is a constant for the chunk: no
    gradient flows back across a chunk boundary, which is the truncation.
    Raises ValueError if k < 1.
    """
    if k < 1:
        raise ValueError(f"chunk length k must be >= 1, got {k}")
    theta = {name: np.array(p, dtype=np.float64) for name, p in params.items()}
    chunk_losses = []
    h_init = h0
    for start in range(0, x.shape[0], k):
        chunk = slice(start, start + k)
        loss, grads, h_init = rnn_loss_and_grads(theta, x[chunk], y[chunk], h_init)
        if max_norm is not None:
            grads, _ = clip_grad_norm(grads, max_norm)
        theta = {name: p - lr * grads[name] for name, p in theta.items()}
        chunk_losses.append(float(loss))
    return theta, chunk_losses


# ----------------------------------------------------------------------------
# Vanishing and exploding gradients


def hidden_jacobian(h, W, t, k):
    """Jacobian dh(t)/dh(k) of one sequence, in the Jacobian (numerator) layout.

    h: (T+1, H) hidden states of ONE sequence with h[0] = h0, h[s] = h(s);
    W: (H, H); integers 0 <= k <= t <= T -> (H, H), row i = d h_i(t) / d h(k).

        dh(t)/dh(k) = D(t) W D(t-1) W ... D(k+1) W,   D(s) = diag(1 - h(s)^2),

    the identity when t == k.  Raises ValueError unless 0 <= k <= t <= T.
    Its norm shrinks or grows roughly like a power of W's largest singular
    value: vanishing or exploding gradients.
    """
    if not 0 <= k <= t < h.shape[0]:
        raise ValueError(f"need 0 <= k <= t <= T = {h.shape[0] - 1}, got t={t}, k={k}")
    J = np.eye(W.shape[0])
    for s in range(k + 1, t + 1):
        # diag(d) @ M scales the rows of M: no need to build diag(d).
        J = (1.0 - h[s] ** 2)[:, None] * (W @ J)
    return J


# ----------------------------------------------------------------------------
# Sequences in practice: padding, long streams, sampling


def masked_temporal_softmax_cross_entropy(logits, y, mask):
    """Softmax cross-entropy of the real (unpadded) steps, summed over time.

    logits: (T, N, K), y: (T, N) integer labels, mask: (T, N) booleans,
    True where step t of sequence n is real and False where it is padding
    -> loss (float), dlogits (T, N, K), zero wherever mask is False.

        J = sum_t J(t),   J(t) = -(1/N) sum_n m_n(t) log softmax(o(t))[n, y_n(t)]

    N is the batch size, padded sequences included, exactly as in
    ``temporal_softmax_cross_entropy``, which this equals when mask is all
    True.  Labels where mask is False are ignored (any integer, e.g. a
    padding id or -1).  Stable for large logits.
    """
    T, N = y.shape
    mask = np.asarray(mask, dtype=bool)
    t_idx, n_idx = np.meshgrid(np.arange(T), np.arange(N), indexing="ij")
    # A padded label may be anything, so look up class 0 there; np.where
    # then drops that step whatever its loss is (even inf or nan).
    y_real = np.where(mask, y, 0)
    step_losses = -log_softmax(logits)[t_idx, n_idx, y_real]
    loss = np.where(mask, step_losses, 0.0).sum() / N
    dlogits = softmax(logits)
    dlogits[t_idx, n_idx, y_real] -= 1.0
    return float(loss), np.where(mask[:, :, None], dlogits / N, 0.0)


def bits_per_char(logits, y, mask=None):
    """How well a model predicts text: cross-entropy in bits per character, and perplexity.

    logits: (T, N, K), y: (T, N) integer labels, mask: (T, N) booleans, True
    at the real steps, or None (every step is real)
    -> (bits, perplexity), two Python floats: bits is the mean over the real
       steps of -log2 softmax(logits)[y] (in bits: log base 2; the mean over
       the real steps only, whatever N and T); perplexity = 2 ** bits.

    Computed from ``masked_temporal_softmax_cross_entropy``.  Raises
    ValueError if no step is real.
    """
    T, N = np.shape(y)
    mask = np.ones((T, N), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    real = int(mask.sum())
    if real == 0:
        raise ValueError("no real step to average over")
    loss, _ = masked_temporal_softmax_cross_entropy(logits, y, mask)
    # the loss is in nats and divided by N; a character's share is loss * N / real
    bits = loss * N / real / np.log(2.0)
    return float(bits), float(2.0 ** bits)


def batchify(ids, N):
    """Cut one long sequence into N contiguous streams, stored time-major.

    ids: (M,) integers; N: the number of streams, an int >= 1
    -> (L, N) array of the same dtype with L = M // N, whose column n is
    ids[n*L:(n+1)*L]; the last M - N*L ids are dropped.

    Row t holds step t of every stream, so consecutive chunks of rows
    continue each stream where the previous chunk stopped.  Raises
    ValueError if N < 1 or if there are fewer ids than streams (L == 0).
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    if N < 1:
        raise ValueError(f"need at least one stream, got N={N}")
    L = len(ids) // N
    if L == 0:
        raise ValueError(f"{len(ids)} ids cannot fill {N} streams")
    # Row n of the (N, L) reshape is stream n; transposing makes time the first axis.
    return ids[:N * L].reshape(N, L).T.copy()


def draw_next(logits, rng, temperature=1.0):
    """The next id, drawn from a model's logits at a temperature.

    logits: (K,); rng: numpy.random.Generator; temperature: float >= 0
    -> int in [0, K): rng.choice(K, p=softmax(logits / temperature)), exactly
    one draw from rng, if temperature > 0; the argmax of logits, drawing
    nothing, if temperature == 0.  Raises ValueError for a negative
    temperature.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:  # the limit of ever sharper distributions
        return int(np.argmax(logits))
    return int(rng.choice(len(logits), p=softmax(logits / temperature)))


def sample(params, h0, x0, T, rng, temperature=1.0):
    """Let a trained next-character RNN write T ids, one sequence.

    params: dict U (H, K), W (H, H), b (H,), V (K, H), c (K,) of a model
    with one-hot inputs (D = K), as in ``rnn_loss_and_grads``; h0: (H,),
    the hidden state before the first input; x0: the first input id, an int
    in [0, K); T: the number of ids to write; rng: numpy.random.Generator;
    temperature: float >= 0 -> ids: (T,) integer array (x0 not included).

    Step s feeds the previous id (x0 at s = 1) as a one-hot vector,
    updates the hidden state, which is carried from step to step, and picks

        id(s) = rng.choice(K, p=softmax(o(s) / temperature))   if temperature > 0
        id(s) = argmax o(s)                                    if temperature == 0

    where o(s) = c + V h(s), as ``draw_next`` draws.  Every step with
    temperature > 0 draws exactly once from rng; temperature 0 (greedy)
    draws nothing.  Raises ValueError for a negative temperature.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    U, W, b, V, c = (params[k] for k in ("U", "W", "b", "V", "c"))
    K = V.shape[0]
    ids = np.empty(T, dtype=np.int64)
    h = np.asarray(h0, dtype=np.float64)[None, :]  # (1, H): a batch of one
    x_id = int(x0)
    for s in range(T):
        x_t = np.zeros((1, K))
        x_t[0, x_id] = 1.0
        h, _ = rnn_step_forward(x_t, h, U, W, b)
        x_id = draw_next(c + h[0] @ V.T, rng, temperature)
        ids[s] = x_id
    return ids
