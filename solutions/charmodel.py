"""Chapter 3's capstone: a character-level LSTM language model (not graded).

Everything around the graded functions, written once for the book and for
the exercise notebook (which can hand these functions out in a ``given``
cell): preparing the course's own text, a text payload for a notebook that
travels without the repository, the training loop, evaluation in bits per
character, and sampling.  The graded functions are arguments, so the book
runs the reference functions and the notebook runs the learner's:

    lstm_forward(x, y0, c0, params) -> (y, cache)                      chapter 3
    lstm_backward(dy, cache) -> (dx, dy0, dc0, grads)                  chapter 3
    lstm_step_forward(x_t, y_prev, c_prev, params) -> (y_t, c_t, cache)  chapter 3
    softmax_cross_entropy(logits, y) -> (loss, dlogits), mean over rows   chapter 1
    dense_forward(x, W, b) -> (z, cache), dense_backward(dz, cache) -> (dx, dW, db)  chapter 1
    adam_step(params, grads, state, lr) -> (params, state)             chapter 1
    clip_grad_norm(grads, max_norm) -> (grads, norm)                   chapter 2, optional
    bits_per_char(logits, y, mask=None) -> (bits, perplexity)          chapter 2
    draw_next(logits, rng, temperature) -> id                          chapter 2

The model reads one-hot characters x(t) of size K (the vocabulary), runs an
LSTM with H units (keys ``W_* R_* p_* b_*`` of chapter 3) and reads out

    l(t) = W_y y(t) + b_y,    p(next character) = softmax(l(t)),

with ``W_y (K, H)`` and ``b_y (K,)`` in the same dict.  Text is handled as
integer ids; a long text is cut into N contiguous streams stored
time-major, ``(L, N)``, by ``batchify`` of chapter 2.  Besides NumPy, the
functions use ``softmax`` and ``log_softmax`` of chapter 1 (the notebook
gives them); a notebook that hands these functions out in a ``given`` cell
also imports base64, bz2, re, time, Path (pathlib) and numpy as np there.
"""
import base64
import bz2
import re
import time
from pathlib import Path

import numpy as np

from solutions.dcl_backprop import log_softmax, softmax


# ----------------------------------------------------------------------------
# The course's own text


def markdown_prose(markdown):
    """The text of a MyST Markdown page without its front matter and code cells.

    markdown: str -> str.  Prose, formulas, tables and directives stay; what
    the build executes (```{code-cell} blocks) and the YAML header go, and
    runs of blank lines shrink to one.
    """
    text = re.sub(r"\A---\n.*?\n---\n", "", markdown, flags=re.S)
    text = re.sub(r"^```\{code-cell\}.*?^```[ \t]*\n?", "", text, flags=re.S | re.M)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def course_text(folder, block=2000, every=10):
    """Training and validation text from the Markdown pages in ``folder``.

    folder: a directory holding the book's ``*.md`` pages; block: the length
    of a block in characters; every: one block in ``every`` is held out
    -> (train_text, val_text), two str.

    The pages are read in the order of their file names and cleaned by
    ``markdown_prose``, then cut into blocks of about ``block`` characters
    (each ends at the end of a line).  Counting the blocks through all pages,
    block number every-1, 2*every-1, ... goes to validation, the others to
    training: both parts sample every chapter, from its first section to its
    references, and no line is in both.
    """
    pages = sorted(Path(folder).glob("*.md"))
    if not pages:
        raise FileNotFoundError(f"no *.md pages in {Path(folder).resolve()}")
    parts, count = ([], []), 0
    for page in pages:
        text = markdown_prose(page.read_text(encoding="utf-8"))
        start = 0
        while start < len(text):
            end = text.find("\n", start + block) + 1 or len(text)
            parts[count % every == every - 1].append(text[start:end])
            start, count = end, count + 1
    return "".join(parts[0]), "".join(parts[1])


def vocabulary(text):
    """The distinct characters of ``text``, sorted, as one str of length K."""
    return "".join(sorted(set(text)))


def encode(text, vocab):
    """Character ids: str of length M, vocab str of length K -> (M,) int64 in [0, K)."""
    index = {ch: i for i, ch in enumerate(vocab)}
    return np.fromiter((index[ch] for ch in text), dtype=np.int64, count=len(text))


def decode(ids, vocab):
    """The inverse of ``encode``: (M,) ids -> str."""
    return "".join(vocab[int(i)] for i in ids)


def pack_text(text, width=100):
    """A text as printable ASCII for a notebook cell: bz2, then base85.

    text: str -> str of lines of at most ``width`` characters, free of
    quotes, backslashes and whitespace inside the lines, so it fits in a
    triple-quoted Python string.  The same text gives the same payload
    (bz2 has no time stamp; the level is fixed).  ``unpack_text`` inverts it.
    """
    packed = base64.b85encode(bz2.compress(text.encode("utf-8"), compresslevel=9)).decode("ascii")
    return "\n".join(packed[i:i + width] for i in range(0, len(packed), width))


def unpack_text(payload):
    """The text that ``pack_text`` packed; whitespace in ``payload`` is ignored."""
    return bz2.decompress(base64.b85decode("".join(payload.split()))).decode("utf-8")


def text_cell_source(train_text, val_text):
    """Python source of a notebook cell that defines ``train_text`` and ``val_text``.

    train_text, val_text: str -> str.  The cell calls ``unpack_text`` on two
    payloads made by ``pack_text``, so a notebook carries the course's text
    without the repository; the same texts give the same cell.
    """
    return ("# The course's own text, packed (bz2, then base85): training and validation parts.\n"
            f'train_text = unpack_text("""\n{pack_text(train_text)}\n""")\n'
            f'val_text = unpack_text("""\n{pack_text(val_text)}\n""")\n')


def unigram_bits_per_char(train_ids, val_ids, K):
    """Bits per character of a model that ignores context, as a baseline.

    train_ids: (M,) ids, val_ids: (M_val,) ids in [0, K) -> float: the
    cross-entropy, in bits, of val_ids under the character frequencies of
    train_ids (each count plus one, so that no character has probability 0).
    """
    counts = np.bincount(train_ids, minlength=K) + 1.0
    return float(-np.mean(np.log2(counts[val_ids] / counts.sum())))


# ----------------------------------------------------------------------------
# The model


def init_char_lstm(rng, K, H, forget_bias=1.0, frequencies=None):
    """Initial parameters of the character model.

    rng: numpy.random.Generator; K: vocabulary size; H: LSTM units;
    frequencies: None or (K,) positive counts of the characters
    -> dict with the LSTM's keys (``W_*`` (H, K), ``R_*`` (H, H), ``p_*``
    and ``b_*`` (H,)) and the read-out ``W_y`` (K, H), ``b_y`` (K,).

    W_* and W_y have entries N(0, 1/H); each R_* is a random orthogonal
    matrix (every singular value 1, see chapter 2); peepholes and biases
    start at 0, except b_f = forget_bias, so that the cells start out
    remembering, and b_y = log(frequencies / their sum) if frequencies are
    given, so that the untrained model already predicts the character
    frequencies instead of the uniform distribution.
    """
    P = {}
    for g in "zifo":
        P["W_" + g] = rng.standard_normal((H, K)) / np.sqrt(H)
        Q, S = np.linalg.qr(rng.standard_normal((H, H)))
        P["R_" + g] = Q * np.sign(np.diag(S))  # signs fixed: Q is uniformly distributed
        P["b_" + g] = np.zeros(H)
    for g in "ifo":
        P["p_" + g] = np.zeros(H)
    P["b_f"] = np.full(H, float(forget_bias))
    P["W_y"] = rng.standard_normal((K, H)) / np.sqrt(H)
    P["b_y"] = np.zeros(K) if frequencies is None else np.log(frequencies / np.sum(frequencies))
    return P


def _lstm_part(params):
    """The LSTM's parameters: every key but the read-out's W_y and b_y."""
    return {k: v for k, v in params.items() if k not in ("W_y", "b_y")}


def _one_hot(ids, K):
    """ids of any shape -> one-hot float64 array of that shape plus (K,)."""
    return np.eye(K)[ids]


def char_loss_and_grads(params, x_ids, target_ids, y0, c0, *, lstm_forward, lstm_backward,
                        softmax_cross_entropy, dense_forward, dense_backward):
    """Loss per character and gradients of the model on one chunk of streams.

    x_ids, target_ids: (T, N) ids, the inputs and the characters that follow them;
    y0, c0: (N, H), the state the chunk starts from (treated as constants)
    -> loss (float, mean cross-entropy in nats over the T*N predictions),
    grads (dict with the keys of params).
    """
    T, N = x_ids.shape
    W_y, b_y = params["W_y"], params["b_y"]
    K, H = W_y.shape
    y, cache = lstm_forward(_one_hot(x_ids, K), y0, c0, _lstm_part(params))
    # the read-out is a dense layer applied to every step at once: rows are (t, n)
    logits, read_cache = dense_forward(y.reshape(T * N, H), W_y, b_y)
    loss, dlogits = softmax_cross_entropy(logits, target_ids.reshape(T * N))
    dy, dW_y, db_y = dense_backward(dlogits, read_cache)
    grads = lstm_backward(dy.reshape(T, N, H), cache)[3]
    grads["W_y"], grads["b_y"] = dW_y, db_y
    return loss, grads


def run_states(params, x_ids, y, c, *, lstm_step_forward):
    """Feed a chunk to the model and return the state after it.

    x_ids: (T, N) ids; y, c: (N, H), the state before the chunk
    -> (y, c) after the last step, each (N, H).

    ``lstm_forward`` returns the outputs y(t) but not the last cell state,
    which the next chunk needs, so the state is carried by stepping.
    """
    lstm = _lstm_part(params)
    K = params["W_y"].shape[0]
    for x_t in _one_hot(x_ids, K):
        y, c, _ = lstm_step_forward(x_t, y, c, lstm)
    return y, c


def held_out_bits(params, streams, *, lstm_step_forward, dense_forward, bits_per_char):
    """Cross-entropy of the model on held-out text, in bits per character.

    streams: (L, N) ids, N contiguous pieces of the text -> float.  Each
    stream starts from the zero state; its first character is read, every
    later one is predicted from all characters before it in its stream:
    the mean of -log2 p(character) over the (L - 1) N predictions, as
    ``bits_per_char`` of chapter 2 computes it from the read-out's logits.
    """
    W_y, b_y = params["W_y"], params["b_y"]
    K, H = W_y.shape
    L, N = streams.shape
    lstm = _lstm_part(params)
    y, c = np.zeros((N, H)), np.zeros((N, H))
    logits = np.empty((L - 1, N, K))
    for t in range(L - 1):
        y, c, _ = lstm_step_forward(_one_hot(streams[t], K), y, c, lstm)
        logits[t] = dense_forward(y, W_y, b_y)[0]
    return bits_per_char(logits, streams[1:])[0]


def sample_text(params, vocab, prime, n, rng, temperature, *, lstm_step_forward, dense_forward,
                draw_next):
    """Let the model write n characters after reading ``prime``.

    vocab: str of K characters; prime: a non-empty str over vocab; n: int;
    rng: numpy.random.Generator; temperature: float >= 0 -> str of n
    characters (prime not included).

    The state starts at zero and is carried through prime and then through
    every written character.  Each character is picked by ``draw_next``
    from the read-out's logits and fed back in.
    """
    W_y, b_y = params["W_y"], params["b_y"]
    K, H = W_y.shape
    y, c = run_states(params, encode(prime[:-1], vocab)[:, None], np.zeros((1, H)),
                      np.zeros((1, H)), lstm_step_forward=lstm_step_forward)
    lstm = _lstm_part(params)
    nxt, out = int(encode(prime[-1], vocab)[0]), []
    for _ in range(n):
        y, c, _ = lstm_step_forward(_one_hot([nxt], K), y, c, lstm)
        nxt = draw_next(dense_forward(y, W_y, b_y)[0][0], rng, temperature)
        out.append(vocab[nxt])
    return "".join(out)


# ----------------------------------------------------------------------------
# Training


def train_char_lstm(params, streams, updates, seq_len, lr, *, lstm_forward, lstm_backward,
                    lstm_step_forward, softmax_cross_entropy, adam_step, dense_forward,
                    dense_backward, clip_grad_norm=None, max_norm=5.0, report=None,
                    report_every=100):
    """Truncated BPTT with Adam over contiguous streams of text.

    params: initial parameters (``init_char_lstm``); streams: (L, N) ids
    from ``batchify``; updates: number of Adam steps; seq_len: chunk length
    k; lr: Adam's learning rate, a float or a function of the update number
    (0, 1, ...) returning one; clip_grad_norm, max_norm: if a clipping
    function is given, the gradient is clipped to max_norm before each step;
    report: None or a function report(update, params, losses) called after
    every ``report_every`` updates and after the last
    -> (params, losses): the trained parameters (new arrays) and the list of
    training losses, one per update, in nats per character.

    The streams are walked chunk by chunk: update j trains on rows
    [s, s + k) as inputs and [s + 1, s + k + 1) as targets, starting from the
    state each stream reached at the end of the previous chunk; the state is
    a constant for the gradient (truncation) and is reset to zero whenever
    the walk wraps around to the start of the streams.
    """
    L, N = streams.shape
    H = params["W_y"].shape[1]
    chunks = (L - 1) // seq_len
    if chunks < 1:
        raise ValueError(f"streams of {L} steps are too short for chunks of {seq_len}")
    state, losses = {}, []
    for update in range(updates):
        s = (update % chunks) * seq_len
        if s == 0:  # a new pass over the text starts from the zero state
            y, c = np.zeros((N, H)), np.zeros((N, H))
        x_ids, target_ids = streams[s:s + seq_len], streams[s + 1:s + seq_len + 1]
        loss, grads = char_loss_and_grads(params, x_ids, target_ids, y, c, lstm_forward=lstm_forward,
                                          lstm_backward=lstm_backward,
                                          softmax_cross_entropy=softmax_cross_entropy,
                                          dense_forward=dense_forward, dense_backward=dense_backward)
        # the next chunk starts where this one ended (computed with the
        # parameters before this update, as in chapter 2's truncated BPTT)
        y, c = run_states(params, x_ids, y, c, lstm_step_forward=lstm_step_forward)
        if clip_grad_norm is not None:
            grads, _ = clip_grad_norm(grads, max_norm)
        params, state = adam_step(params, grads, state, lr(update) if callable(lr) else lr)
        losses.append(float(loss))
        if report is not None and ((update + 1) % report_every == 0 or update + 1 == updates):
            report(update + 1, params, losses)
    return params, losses


# ----------------------------------------------------------------------------
# The capstone run


def capstone_config(short=False):
    """Settings of the capstone run, as a dict (change a copy to experiment).

    short=False: the run of the book; short=True: the shortened run of the
    exercise notebook, the same model trained for fewer updates (the
    learning rate decays over the shorter run).  Keys: H (units), N (streams), seq_len (chunk length k),
    updates, lr (Adam's rate for the first half; it then decays linearly
    towards 0), max_norm (clipping), forget_bias, seed (initial weights),
    eval_every (updates between evaluations on the held-out text), sample_at
    (updates after which the model writes), temperatures, prime (the text
    it writes after), sample_length, val_streams (streams of the held-out
    text).
    """
    config = dict(H=128, N=32, seq_len=50, updates=700, lr=0.01, max_norm=5.0, forget_bias=1.0,
                  seed=0, eval_every=50, sample_at=(100, 300, 700), temperatures=(0.5, 0.8, 1.1),
                  prime="The ", sample_length=160, val_streams=32)
    if short:
        config.update(updates=400, sample_at=(100, 400))
    return config


def run_capstone(train_ids, val_ids, vocab, config, *, functions, progress=None):
    """Train the character LSTM of the capstone and record how it learns.

    train_ids, val_ids: (M,) and (M_val,) ids of the training and held-out
    text; vocab: str of the K characters; config: a dict as made by
    ``capstone_config``; functions: dict with the functions named in the
    module docstring and ``batchify`` (chapter 2); progress: None or a
    function taking one line of text (e.g. print), called at every
    evaluation -> dict with
      params: the trained parameters;
      curve: list of (update, held-out bpc, training bpc of the last 25
        updates), from update 0 (the untrained model) every eval_every updates;
      samples: {(update, temperature): str} for every update of sample_at;
      losses: the training loss of every update, in nats per character;
      seconds: the time the run took.

    Every random number comes from generators seeded by config["seed"]
    (the initial weights) and 1 (the samples), so a run repeats exactly.
    """
    c, f = config, functions
    K = len(vocab)
    steps = dict(lstm_step_forward=f["lstm_step_forward"], dense_forward=f["dense_forward"])
    evaluate = dict(steps, bits_per_char=f["bits_per_char"])
    writing = dict(steps, draw_next=f["draw_next"])
    val_streams = f["batchify"](val_ids, c["val_streams"])
    curve, samples, start = [], {}, time.perf_counter()

    def report(update, params, losses):
        curve.append((update, held_out_bits(params, val_streams, **evaluate),
                      float(np.mean(losses[-25:]) / np.log(2.0)) if losses else float("nan")))
        if update in c["sample_at"]:
            for tau in c["temperatures"]:
                samples[update, tau] = sample_text(params, vocab, c["prime"], c["sample_length"],
                                                   np.random.default_rng(1), tau, **writing)
        if progress is not None:
            progress(f"update {update:4d}/{c['updates']}: held-out {curve[-1][1]:.2f} bits per "
                     f"character, training {curve[-1][2]:.2f}  ({time.perf_counter() - start:.0f} s)")

    def lr(update):  # constant for the first half of the run, then a linear decay towards 0
        return c["lr"] * min(1.0, 2.0 * (1.0 - update / c["updates"]))

    params = init_char_lstm(np.random.default_rng(c["seed"]), K, c["H"], c["forget_bias"],
                            frequencies=np.bincount(train_ids, minlength=K) + 1.0)
    report(0, params, [])
    params, losses = train_char_lstm(
        params, f["batchify"](train_ids, c["N"]), c["updates"], c["seq_len"], lr,
        lstm_forward=f["lstm_forward"], lstm_backward=f["lstm_backward"],
        lstm_step_forward=f["lstm_step_forward"],
        softmax_cross_entropy=f["softmax_cross_entropy"], adam_step=f["adam_step"],
        dense_forward=f["dense_forward"], dense_backward=f["dense_backward"],
        clip_grad_norm=f.get("clip_grad_norm"), max_norm=c["max_norm"], report=report,
        report_every=c["eval_every"])
    return dict(params=params, curve=curve, samples=samples, losses=losses,
                seconds=time.perf_counter() - start)


def draw_learning_curve(ax, curve, baselines=()):
    """Plot a capstone learning curve on a matplotlib Axes.

    curve: the list ``run_capstone`` returns; baselines: (label, bits) pairs
    drawn as dotted horizontal lines.
    """
    update, held_out, training = (np.array(v) for v in zip(*curve))
    ax.plot(update[1:], training[1:], color="0.55", lw=1.5, label="training chunks")
    ax.plot(update, held_out, "o-", color="tab:blue", ms=3.5, lw=1.8, label="held-out text")
    for label, bits in baselines:
        ax.axhline(bits, color="0.3", ls=":", lw=1)
        ax.text(update[-1], bits + 0.06, f"{label}, {bits:.2f}", ha="right", va="bottom", fontsize=8)
    ax.set_xlim(0, 1.02 * update[-1])
    ax.set_xlabel("update")
    ax.set_ylabel("bits per character")
    ax.legend(frameon=False, loc="center right")


def format_samples(result, config, width=64):
    """The samples of a run as lines of text: per checkpoint, one block per temperature.

    A line break of a sample is shown as ⏎ so that each sample stays a block.
    """
    held_out = {update: bits for update, bits, _ in result["curve"]}
    lines = []
    for update in config["sample_at"]:
        lines.append(f"after {update} updates (held-out: {held_out[update]:.2f} bits per character)")
        for tau in config["temperatures"]:
            shown = (config["prime"] + result["samples"][update, tau]).replace("\n", "⏎")
            chunks = [shown[i:i + width] for i in range(0, len(shown), width)]
            lines.append(f"  tau = {tau:3.1f} | " + "\n            | ".join(chunks))
        lines.append("")
    return "\n".join(lines)


def notebook_text_cell():
    """The cell of the lstm exercise notebook that carries the course's text:
    ``text_cell_source`` of ``course_text`` of the book beside this package."""
    return text_cell_source(*course_text(Path(__file__).resolve().parent.parent / "book"))
