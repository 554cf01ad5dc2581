"""Tests of solutions.charmodel (chapter 3's capstone: the character LSTM).

Oracles: texts and numbers worked out by hand, central differences of the
loss, whole-sequence forward passes (``lstm_forward``) against the
chunk-by-chunk and step-by-step code with carried state, and replays of a
copy of the random generator for the samples.
"""
import copy
import math

import numpy as np
import pytest

from solutions import charmodel as C
from solutions.dcl_backprop import (adam_step, dense_backward, dense_forward, log_softmax,
                                    numerical_gradient, relative_error, softmax,
                                    softmax_cross_entropy)
from solutions.lstm import lstm_backward, lstm_forward, lstm_step_forward
from solutions.rnn_bptt import batchify, bits_per_char, clip_grad_norm, draw_next
from tests.conftest import ROOT
from tests.solutions.helpers import assert_same

pytestmark = pytest.mark.filterwarnings("error")

STEP = dict(lstm_step_forward=lstm_step_forward)
READ = dict(STEP, dense_forward=dense_forward)
EVAL = dict(READ, bits_per_char=bits_per_char)
GRAD = dict(lstm_forward=lstm_forward, lstm_backward=lstm_backward, dense_forward=dense_forward,
            dense_backward=dense_backward,
            softmax_cross_entropy=softmax_cross_entropy)
FUNCTIONS = dict(GRAD, lstm_step_forward=lstm_step_forward, adam_step=adam_step,
                 clip_grad_norm=clip_grad_norm, batchify=batchify, bits_per_char=bits_per_char,
                 draw_next=draw_next)


def small_model(seed=0, K=5, H=3, peepholes=0.5):
    """Initial parameters with non-zero peepholes and biases, so that every term counts."""
    rng = np.random.default_rng(seed)
    P = C.init_char_lstm(rng, K, H, forget_bias=1.0, frequencies=np.arange(1.0, K + 1))
    for key in P:
        if key[0] in "pb":
            P[key] = P[key] + peepholes * rng.standard_normal(P[key].shape)
    return P


def lstm_outputs(P, ids):
    """y (T, N, H) of the whole streams ids (T, N) from the zero state, by lstm_forward."""
    K, H = P["W_y"].shape
    core = {k: v for k, v in P.items() if k not in ("W_y", "b_y")}
    N = ids.shape[1]
    y, _ = lstm_forward(np.eye(K)[ids], np.zeros((N, H)), np.zeros((N, H)), core)
    return y


# ----------------------------------------------------------------------------
# Text


PAGE = """---
jupytext:
  formats: md
---
# Title

Some prose with $x(t)$.

```{code-cell} ipython3
:tags: [remove-input]
print("not text")
```



More prose.
"""


def test_markdown_prose_drops_front_matter_and_code_cells():
    assert C.markdown_prose(PAGE) == "# Title\n\nSome prose with $x(t)$.\n\nMore prose.\n"


def test_course_text_holds_out_every_tenth_block(tmp_path):
    lines_a = [f"line a{i:03d} " + "x" * 20 for i in range(60)]   # 30 characters a line
    lines_b = [f"line b{i:03d} " + "y" * 20 for i in range(40)]
    (tmp_path / "b.md").write_text("\n".join(lines_b) + "\n")
    (tmp_path / "a.md").write_text("\n".join(lines_a) + "\n")
    train, val = C.course_text(tmp_path, block=85, every=3)
    # Blocks end at the first line end after 85 characters: 3 lines (93 characters).
    # Page a (by name first) has blocks 0..19, page b continues with 20..33;
    # blocks 2, 5, 8, ... are held out.
    blocks = ["\n".join(lines[i:i + 3]) + "\n" for lines in (lines_a, lines_b)
              for i in range(0, len(lines), 3)]
    assert val == "".join(b for j, b in enumerate(blocks) if j % 3 == 2)
    assert train == "".join(b for j, b in enumerate(blocks) if j % 3 != 2)
    with pytest.raises(FileNotFoundError):
        C.course_text(tmp_path / "empty")


def test_course_text_of_the_book():
    train, val = C.course_text(ROOT / "book")
    assert 0.05 < len(val) / (len(train) + len(val)) < 0.15
    assert "code-cell" not in train + val and "jupytext" not in train + val
    assert "backprop" in val.lower() and "gradient" in val.lower() and "LSTM" in train


def test_vocabulary_encode_decode():
    vocab = C.vocabulary("banana ⏎")
    assert vocab == " abn⏎"
    ids = C.encode("nab ⏎", vocab)
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(ids, [3, 1, 2, 0, 4])
    assert C.decode(ids, vocab) == "nab ⏎"


def test_pack_text_round_trip_and_form():
    text = "Gradients flow back, step by step: ∂J/∂h(t) — \"quoted\" \\ back-slashed\n" * 40
    payload = C.pack_text(text, width=60)
    assert C.pack_text(text, width=60) == payload            # deterministic
    assert C.unpack_text(payload) == text
    assert C.unpack_text("  \n" + payload.replace("\n", "\n   ") + "\n") == text
    lines = payload.split("\n")
    assert all(0 < len(line) <= 60 for line in lines) and len(lines) > 1
    assert payload.isascii() and not any(ch in payload for ch in "'\"\\ \t")
    assert len(payload) < len(text) / 2                       # repeated text compresses


def test_text_cell_source_defines_both_texts():
    train, val = "first part\n" * 30, "second part é\n" * 5
    source = C.text_cell_source(train, val)
    assert C.text_cell_source(train, val) == source
    names = {"unpack_text": C.unpack_text}
    exec(source, names)
    assert names["train_text"] == train and names["val_text"] == val


def test_unigram_bits_per_char_by_hand():
    # counts + 1 of [0, 0, 1] over K = 3: (3, 2, 1) / 6; held out: ids 0 and 2
    got = C.unigram_bits_per_char(np.array([0, 0, 1]), np.array([0, 2]), 3)
    assert got == pytest.approx(-(math.log2(3 / 6) + math.log2(1 / 6)) / 2, rel=1e-14)


# ----------------------------------------------------------------------------
# The model


def test_init_char_lstm():
    K, H = 7, 5
    counts = np.array([5.0, 1, 1, 2, 3, 1, 7])
    P = C.init_char_lstm(np.random.default_rng(1), K, H, forget_bias=2.0, frequencies=counts)
    keys = {f"{m}_{g}" for m in "WRb" for g in "zifo"} | {"p_i", "p_f", "p_o", "W_y", "b_y"}
    assert set(P) == keys
    for g in "zifo":
        assert P["W_" + g].shape == (H, K)
        np.testing.assert_allclose(P["R_" + g].T @ P["R_" + g], np.eye(H), atol=1e-14)
    np.testing.assert_array_equal(P["b_f"], 2.0)
    for key in ("b_z", "b_i", "b_o", "p_i", "p_f", "p_o"):
        np.testing.assert_array_equal(P[key], 0.0)
    assert P["W_y"].shape == (K, H)
    # the untrained read-out predicts the frequencies: softmax(b_y) = counts / sum
    np.testing.assert_allclose(softmax(P["b_y"]), counts / counts.sum(), rtol=1e-14)
    np.testing.assert_array_equal(C.init_char_lstm(np.random.default_rng(1), K, H)["b_y"], 0.0)


def test_char_loss_matches_a_whole_sequence_forward():
    P = small_model(2)
    ids = np.random.default_rng(3).integers(0, 5, size=(5, 2))
    loss, _ = C.char_loss_and_grads(P, ids[:-1], ids[1:], np.zeros((2, 3)), np.zeros((2, 3)), **GRAD)
    logits = lstm_outputs(P, ids[:-1]) @ P["W_y"].T + P["b_y"]
    t_idx, n_idx = np.meshgrid(np.arange(4), np.arange(2), indexing="ij")
    want = -log_softmax(logits)[t_idx, n_idx, ids[1:]].mean()   # mean over the 4 * 2 predictions
    assert loss == pytest.approx(want, rel=1e-13)


def test_char_loss_and_grads_vs_central_differences():
    P = small_model(4)
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 5, size=(5, 2))
    y0, c0 = 0.3 * rng.standard_normal((2, 3)), 0.3 * rng.standard_normal((2, 3))
    before = copy.deepcopy((P, ids, y0, c0))

    def J():
        return C.char_loss_and_grads(P, ids[:-1], ids[1:], y0, c0, **GRAD)[0]

    _, grads = C.char_loss_and_grads(P, ids[:-1], ids[1:], y0, c0, **GRAD)
    assert_same((P, ids, y0, c0), before)
    assert set(grads) == set(P)
    for key in P:
        assert grads[key].shape == P[key].shape
        # The loss is a mean of order 1: central differences carry ~1e-10 of
        # rounding, against entries down to ~1e-5; a wrong term is off by O(1).
        assert relative_error(grads[key], numerical_gradient(J, P[key])) < 2e-5, key


def test_run_states_carries_the_state_like_one_long_forward():
    P = small_model(6)
    ids = np.random.default_rng(7).integers(0, 5, size=(9, 2))
    zeros = np.zeros((2, 3))
    y_mid, c_mid = C.run_states(P, ids[:4], zeros, zeros, **STEP)
    y_end, c_end = C.run_states(P, ids[4:], y_mid, c_mid, **STEP)
    y_all = lstm_outputs(P, ids)
    np.testing.assert_allclose(y_mid, y_all[3], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y_end, y_all[-1], rtol=1e-12, atol=1e-14)
    y_one, c_one = C.run_states(P, ids, zeros, zeros, **STEP)
    np.testing.assert_allclose(c_end, c_one, rtol=1e-12, atol=1e-14)


def test_held_out_bits_matches_a_whole_stream_forward():
    P = small_model(8)
    streams = np.random.default_rng(9).integers(0, 5, size=(12, 3))
    logits = lstm_outputs(P, streams[:-1]) @ P["W_y"].T + P["b_y"]
    t_idx, n_idx = np.meshgrid(np.arange(11), np.arange(3), indexing="ij")
    want = -log_softmax(logits)[t_idx, n_idx, streams[1:]].mean() / math.log(2)
    assert C.held_out_bits(P, streams, **EVAL) == pytest.approx(want, rel=1e-12)


def test_held_out_bits_of_a_model_without_context_by_hand():
    # W_y = 0: every prediction is softmax(b_y) = (1/2, 1/4, 1/4), whatever was read.
    P = small_model(10, K=3)
    P["W_y"] = np.zeros_like(P["W_y"])
    P["b_y"] = np.log([0.5, 0.25, 0.25])
    streams = np.array([[0, 1], [1, 1], [2, 0]])     # predicted: 1, 1, 2, 0 -> 2 + 2 + 2 + 1 bits
    assert C.held_out_bits(P, streams, **EVAL) == pytest.approx(7 / 4, rel=1e-14)


# ----------------------------------------------------------------------------
# Sampling


def replay_sample(P, vocab, prime, n, rng, temperature):
    """Independent sampler: the distribution after each prefix from a whole forward pass."""
    text = prime
    for _ in range(n):
        ids = C.encode(text, vocab)[:, None]
        o = lstm_outputs(P, ids)[-1, 0] @ P["W_y"].T + P["b_y"]
        if temperature == 0:
            nxt = int(np.argmax(o))
        else:
            nxt = int(rng.choice(len(vocab), p=softmax(o / temperature)))
        text += vocab[nxt]
    return text[len(prime):]


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.3])
def test_sample_text_carries_the_state_and_draws_once_per_character(temperature):
    P = small_model(11, K=5, H=4, peepholes=1.0)
    P["W_y"] = 3.0 * P["W_y"]   # confident enough that the state matters
    vocab = "abcde"
    rng = np.random.default_rng(12)
    replay = copy.deepcopy(rng)
    got = C.sample_text(P, vocab, "cab", 25, rng, temperature, **READ, draw_next=draw_next)
    assert len(got) == 25
    assert got == replay_sample(P, vocab, "cab", 25, replay, temperature)
    assert rng.bit_generator.state == replay.bit_generator.state   # 25 draws, or none
    if temperature == 0:
        assert rng.bit_generator.state == np.random.default_rng(12).bit_generator.state


# ----------------------------------------------------------------------------
# Training


def test_training_with_lr0_walks_the_streams_with_carried_state():
    P = small_model(13)
    streams = np.random.default_rng(14).integers(0, 5, size=(14, 2))   # 13 targets: 3 chunks of 4
    new, losses = C.train_char_lstm(P, streams, 5, 4, 0.0, **GRAD, lstm_step_forward=lstm_step_forward,
                                    adam_step=adam_step)
    for key in P:
        np.testing.assert_allclose(new[key], P[key], atol=0)
    # The state is carried: chunk j's loss is the mean over its rows of the
    # per-step losses of one forward pass over the whole streams.
    logits = lstm_outputs(P, streams[:-1]) @ P["W_y"].T + P["b_y"]
    t_idx, n_idx = np.meshgrid(np.arange(13), np.arange(2), indexing="ij")
    step_losses = -log_softmax(logits)[t_idx, n_idx, streams[1:]]
    want = [step_losses[s:s + 4].mean() for s in (0, 4, 8)]
    assert losses[:3] == pytest.approx(want, rel=1e-12)
    # After (14 - 1) // 4 = 3 chunks the walk starts again from the zero state.
    assert losses[3:] == pytest.approx(want[:2], rel=1e-12)
    # A loop that forgot to carry the state would see the second chunk from zero:
    restart = C.char_loss_and_grads(P, streams[4:8], streams[5:9], np.zeros((2, 3)),
                                    np.zeros((2, 3)), **GRAD)[0]
    assert abs(restart - want[1]) > 1e-3


def test_one_update_is_adam_on_the_clipped_chunk_gradient():
    P = small_model(15)
    streams = np.random.default_rng(16).integers(0, 5, size=(9, 2))
    calls = []

    def clip(grads, max_norm):
        calls.append(max_norm)
        return clip_grad_norm(grads, max_norm)

    _, grads = C.char_loss_and_grads(P, streams[:4], streams[1:5], np.zeros((2, 3)),
                                     np.zeros((2, 3)), **GRAD)
    want, _ = adam_step(P, clip_grad_norm(grads, 0.1)[0], {}, 0.05)
    lr_seen = []
    new, _ = C.train_char_lstm(P, streams, 1, 4, lambda u: lr_seen.append(u) or 0.05, **GRAD,
                               lstm_step_forward=lstm_step_forward, adam_step=adam_step,
                               clip_grad_norm=clip, max_norm=0.1)
    assert calls == [0.1] and lr_seen == [0]
    for key in P:
        np.testing.assert_allclose(new[key], want[key], rtol=1e-13, atol=1e-15)


def test_training_rejects_streams_shorter_than_a_chunk():
    with pytest.raises(ValueError):
        C.train_char_lstm(small_model(17), np.zeros((4, 2), dtype=int), 1, 4, 0.01, **GRAD,
                          lstm_step_forward=lstm_step_forward, adam_step=adam_step)


# ----------------------------------------------------------------------------
# The capstone run


def test_capstone_configs():
    book, short = C.capstone_config(), C.capstone_config(short=True)
    assert {k for k in book if book[k] != short[k]} == {"updates", "sample_at"}
    for config in (book, short):
        assert config["sample_at"][-1] == config["updates"]
        assert all(u % config["eval_every"] == 0 for u in config["sample_at"])
    assert C.capstone_config() is not C.capstone_config()


def test_run_capstone_records_and_repeats():
    text = "the cell keeps what the gate lets in. " * 30
    vocab = C.vocabulary(text)
    ids = C.encode(text, vocab)
    config = dict(C.capstone_config(), H=6, N=4, seq_len=8, updates=12, eval_every=4, lr=0.05,
                  sample_at=(4, 12), temperatures=(0.0, 1.0), prime="the ", sample_length=20,
                  val_streams=2)
    lines = []
    first = C.run_capstone(ids[:900], ids[900:], vocab, config, functions=FUNCTIONS,
                           progress=lines.append)
    second = C.run_capstone(ids[:900], ids[900:], vocab, config, functions=FUNCTIONS)
    assert [u for u, _, _ in first["curve"]] == [0, 4, 8, 12] and len(lines) == 4
    assert first["curve"][1:] == second["curve"][1:] and first["samples"] == second["samples"]
    assert set(first["samples"]) == {(4, 0.0), (4, 1.0), (12, 0.0), (12, 1.0)}
    assert len(first["losses"]) == 12
    assert all(len(s) == 20 and set(s) <= set(vocab) for s in first["samples"].values())
    # it learns: the held-out cross-entropy falls
    assert first["curve"][-1][1] < first["curve"][0][1] - 0.3


def test_format_samples_marks_line_breaks():
    result = {"curve": [(0, 5.0, np.nan), (2, 3.25, 3.0)], "samples": {(2, 0.5): "ab\ncd"}}
    config = {"sample_at": (2,), "temperatures": (0.5,), "prime": "> "}
    assert C.format_samples(result, config, width=4).split("\n") == [
        "after 2 updates (held-out: 3.25 bits per character)",
        "  tau = 0.5 | > ab",
        "            | ⏎cd",
        ""]
