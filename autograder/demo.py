"""The demo class in ``demo/submitted``: synthetic students a fresh clone can grade.

ada    the reference solutions: full marks
brook  plausible bugs (below): loses the points of the broken checks, and the
       visible points of a function that fails every hidden check of values
       (``grade.withhold_unearned``)
cato   the untouched learner notebooks: no marks
dara   a truncated, invalid notebook file: a clear message and a zero
emil   correct code, plus a cell that never ends and one that tries to read
       the reference solutions: stopped, explained, and still graded
"""
from pathlib import Path

import nbformat

from . import course, notebooks

DEMO = course.ROOT / "demo" / "submitted"

# Plausible mistakes, as (answer cell, reference text, buggy text).
BUGS = {
    "dcl_backprop": [
        ("answer_dense_backward", "dW = dz.T @ x", "dW = dz.T @ x / len(x)"),
        ("answer_softmax", "z.max(axis=-1, keepdims=True)", "z.max()"),
        ("answer_softmax", "e.sum(axis=-1, keepdims=True)", "e.sum(axis=0, keepdims=True)"),
        ("answer_relu_grad", "> 0", ">= 0"),
        ("answer_adam_step", "np.sqrt(v_hat) + eps", "np.sqrt(v_hat + eps)"),
        ("answer_dropout_forward", "scale = (u >= p) / (1.0 - p)", "scale = (u >= p) * 1.0"),
        ("answer_dropout_forward", "if not 0.0 <= p < 1.0:", "if not p < 1.0:"),
        ("answer_dropout_forward", "    return x * scale, scale", "    x *= scale\n    return x, scale"),
        ("answer_l2_penalty", 'if k.startswith("W"):', "if True:"),
        ("answer_l2_penalty", "penalty += 0.5 * lam", "penalty += lam"),
        ("answer_early_stopping", 'epoch - new["best_epoch"] >= patience',
         'epoch - new["best_epoch"] > patience'),
    ],
    "rnn_bptt": [
        ("answer_rnn_step_backward", "dh_prev = delta @ W", "dh_prev = delta @ W.T"),
        ("answer_rnn_backward", "dW += dW_t", "dW = dW_t"),
        ("answer_rnn_backward", "dh[t] + dh_next, step_caches[t])", "dh[t], step_caches[t])"),
        ("answer_temporal_softmax_cross_entropy", ".sum() / N", ".sum() / (N * T)"),
        ("answer_clip_grad_norm", "return {k: g * scale for k, g in grads.items()}, total_norm",
         "return {k: g * min(1.0, max_norm / np.linalg.norm(g)) for k, g in grads.items()}, "
         "total_norm"),
        ("answer_tbptt_train", "y[chunk], h_init)", "y[chunk], h0)"),
        ("answer_hidden_jacobian", "    return J\n", "    return J.T\n"),
        ("answer_rnn_step_forward", "a_t = b + h_prev @ W.T + x_t @ U.T", "a_t = h_prev @ W.T + x_t @ U.T"),
        ("answer_rnn_forward", "        h_prev = h[t]\n", ""),
        ("answer_temporal_softmax_cross_entropy", "return float(loss), dlogits / N",
         "return float(loss), dlogits"),
        ("answer_clip_grad_norm", "scale = max_norm / total_norm if total_norm > max_norm else 1.0",
         "scale = max_norm / total_norm"),
        ("answer_hidden_jacobian", "if not 0 <= k <= t < h.shape[0]:", "if not 0 <= k and t < h.shape[0]:"),
        ("answer_masked_temporal_softmax_cross_entropy",
         "loss = np.where(mask, step_losses, 0.0).sum() / N",
         "loss = np.where(mask, step_losses, 0.0).sum() / mask.sum()"),
        ("answer_masked_temporal_softmax_cross_entropy", "y_real = np.where(mask, y, 0)",
         "y_real = y"),
        ("answer_masked_temporal_softmax_cross_entropy", "-log_softmax(logits)[t_idx",
         "-np.log(softmax(logits))[t_idx"),
        ("answer_batchify", "return ids[:N * L].reshape(N, L).T.copy()",
         "return ids[:N * L].reshape(L, N).copy()"),
        ("answer_draw_next", "softmax(logits / temperature)", "softmax(logits * temperature)"),
        ("answer_bits_per_char", "bits = loss * N / real / np.log(2.0)", "bits = loss * N / real"),
        ("answer_sample", "        ids[s] = x_id\n", "        ids[s] = x_id\n        x_id = int(x0)\n"),
    ],
    "dimensionality": [
        ("answer_sample_unit_ball", "r = rng.random(n) ** (1.0 / D)", "r = rng.random(n)"),
        ("answer_sample_unit_ball", "g = rng.standard_normal((n, D))",
         "g = rng.uniform(-1.0, 1.0, size=(n, D))"),
        ("answer_random_angles", "return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))",
         "return np.arccos(np.clip(cos, -1.0, 1.0))"),
        ("answer_shell_fraction", "math.expm1(D * math.log1p(-eps))",
         "math.expm1(2 * math.log1p(-eps))"),
        ("answer_unit_ball_volume", "math.gamma(0.5 * D + 1.0)", "math.gamma(0.5 * D)"),
        ("answer_corner_ball_diameter", 'return math.sqrt(_as_int(D, "D", 1)) - 1.0',
         'return (math.sqrt(_as_int(D, "D", 1)) - 1.0) / 2'),
        ("answer_empty_cell_fraction", "np.minimum(np.floor(x * bins), bins - 1)",
         "np.floor(x * bins)"),
        ("answer_distance_contrast", "return (d_max - d_min) / d_min",
         "return (d_max - d_min) / d_max"),
        ("answer_unit_ball_volume", "    log_v = log_unit_ball_volume(D, r)\n",
         "    return math.pi ** (0.5 * D) / math.gamma(0.5 * D + 1.0) * r ** D\n"),
        ("answer_ball_to_cube_ratio", 'return unit_ball_volume(_as_int(D, "D", 1), 0.5)',
         "return math.pi ** (D / 2) / (math.gamma(D / 2 + 1) * 2 ** D)"),
        ("answer_shell_fraction", "return float(-math.expm1(", "return float(1.0 - math.exp("),
        ("answer_empty_cell_fraction", "np.unique(cells, axis=0)", "np.unique(cells)"),
    ],
    "lstm": [
        ("answer_lstm_step_backward",
         'dc_prev = delta_c * f + P["p_i"] * delta_i + P["p_f"] * delta_f', "dc_prev = delta_c * f"),
        ("answer_lstm_step_backward", '+ P["p_o"] * delta_o + dc_t',
         '+ P["p_o"] * delta_o + dc_t * f'),
        ("answer_lstm_step_backward", 'grads["p_i"] = (delta_i * c_prev).sum(axis=0)',
         'grads["p_i"] = (delta_i * c_prev)'),
        ("answer_lstm_step_forward", 'P["p_o"] * c_t + P["b_o"]', 'P["p_o"] * c_prev + P["b_o"]'),
        ("answer_lstm_backward", "delta_y = dy[t] + dy_prev", "delta_y = dy[t]"),
        ("answer_lstm_backward", "return dx, dy_prev, dc_prev, grads",
         "return dx, dy_prev, 0 * dc_prev, grads"),
        ("answer_cell_jacobian_diag",
         'return f + P["p_f"] * c_prev * f * (1.0 - f) + P["p_i"] * z * i * (1.0 - i)',
         "return f"),
        ("answer_lstm_step_backward", "delta_c = delta_y * o * (1.0 - tanh_c ** 2)",
         "delta_c = delta_y * o * (1.0 - c_t ** 2)"),
        ("answer_lstm_forward", "y = ys[1:].copy()", "y = ys[:-1].copy()"),
        ("answer_gru_step_backward", "dh_prev = dh_t * u + ", "dh_prev = "),
    ],
}

RUNAWAY = "while True:\n    pass\n"
SNOOP = ("import glob\n"
         "leaked = [open(f).read() for f in glob.glob('/**/solutions/*.py', recursive=True)]\n")


def _introduce(nb, bugs):
    for gid, old, new in bugs:
        cells = [c for c in nb.cells if course.grade_id(c) == gid]
        if not cells or old not in cells[0].source:
            raise ValueError(f"demo bug for {gid} no longer applies: {old!r}")
        cells[0].source = cells[0].source.replace(old, new)
    return nb


def students(aid, release):
    full = notebooks.fill_with_reference(release, aid)
    brook = _introduce(nbformat.from_dict(full), BUGS.get(aid, []))
    emil = nbformat.from_dict(full)
    emil.cells.insert(len(emil.cells) // 2, nbformat.v4.new_code_cell(SNOOP))
    emil.cells.insert(len(emil.cells) // 2, nbformat.v4.new_code_cell(RUNAWAY))
    for i, c in enumerate(emil.cells):
        c.id = f"emil-{i}"
    text = nbformat.writes
    return {"ada": text(full), "brook": text(brook), "cato": text(release),
            "dara": text(full)[:2000], "emil": text(emil)}


def build(check_only=False):
    stale = []
    for aid in course.assignments():
        release = nbformat.read(course.EXERCISES / aid / f"{aid}.ipynb", as_version=4)
        for sid, content in students(aid, release).items():
            target = DEMO / sid / aid / f"{aid}.ipynb"
            if not target.exists() or target.read_text() != content + "\n":
                stale.append(f"{sid}/{aid}")
                if not check_only:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(content + "\n")
    return stale
