"""Speed of the reference LSTM (forward + backward) against its BLAS floor.

Times one ``lstm_forward`` + ``lstm_backward`` at T=50, N=32, D=H=128
(float64) and, separately, only the matrix products such a pass needs, done
the same way on arrays of the same shapes: the input projection of all
steps (T*N, D) x (D, 4H), T recurrent products (N, H) x (H, 4H) forward,
T products (N, 4H) x (4H, H) for dy_prev backward, and the dx, dW and dR
products over the stacked deltas (T*N, 4H).  The ratio (full pass /
products) is what the elementwise work and the Python loop cost on top of
the arithmetic that cannot be avoided.

The two are timed alternately, repeat after repeat, so that a busy machine
slows both alike; each figure is the median over the repeats, after one
warm-up call.  Thread counts are whatever the environment sets.

Where PyTorch is installed (it is not a course requirement), the same pass
through ``torch.nn.LSTM`` in float64 on the CPU (no peepholes: its
equations are ours with p = 0) is timed too, for comparison.

Run from the repository root:  python benchmarks/bench_lstm.py
"""
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from solutions.lstm import lstm_backward, lstm_forward  # noqa: E402

T, N, D, H = 50, 32, 128, 128
REPEATS = 11


def make_params(rng):
    params = {}
    for g in "zifo":
        params["W_" + g] = rng.normal(0.0, 1.0 / np.sqrt(D), (H, D))
        params["R_" + g] = rng.normal(0.0, 1.0 / np.sqrt(H), (H, H))
        params["b_" + g] = rng.normal(0.0, 0.1, H)
    for g in "ifo":
        params["p_" + g] = rng.normal(0.0, 0.1, H)
    return params


def main():
    rng = np.random.default_rng(0)
    params = make_params(rng)
    x = rng.normal(size=(T, N, D))
    y0 = rng.normal(size=(N, H))
    c0 = rng.normal(size=(N, H))
    dy = rng.normal(size=(T, N, H))

    def full_pass():
        _, cache = lstm_forward(x, y0, c0, params)
        lstm_backward(dy, cache)

    W = rng.normal(size=(4 * H, D))
    R = rng.normal(size=(4 * H, H))
    x2 = x.reshape(T * N, D)
    y_prev = rng.normal(size=(T, N, H))
    delta = rng.normal(size=(T, N, 4 * H))
    delta2 = delta.reshape(T * N, 4 * H)
    y_prev2 = y_prev.reshape(T * N, H)

    def products_only():
        x2 @ W.T                      # input projection, all steps at once
        for t in range(T):
            y_prev[t] @ R.T           # recurrence, forward
        for t in range(T):
            delta[t] @ R              # dy_prev, backward
        delta2 @ W                    # dx
        delta2.T @ x2                 # dW
        delta2.T @ y_prev2            # dR

    times = {full_pass: [], products_only: []}
    for fn in times:
        fn()  # warm-up
    for _ in range(REPEATS):
        for fn, ts in times.items():
            start = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - start)
    t_full = float(np.median(times[full_pass]))
    t_floor = float(np.median(times[products_only]))

    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    flops = 2 * 3 * (T * N * D * 4 * H) + 2 * 3 * (T * N * H * 4 * H)
    print(f"numpy {np.__version__}, BLAS: {blas['name']} {blas.get('version', '')}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"T={T} N={N} D={D} H={H} float64, median of {REPEATS} after a warm-up")
    print(f"lstm_forward + lstm_backward : {t_full * 1e3:8.2f} ms")
    print(f"matrix products only (floor) : {t_floor * 1e3:8.2f} ms"
          f"  ({flops / t_floor / 1e9:.1f} GFLOP/s)")
    print(f"ratio                        : {t_full / t_floor:8.2f}")
    t_torch = torch_pass(x, y0, c0, dy)
    if t_torch is not None:
        print(f"torch.nn.LSTM fwd + bwd      : {t_torch * 1e3:8.2f} ms"
              f"  (ours / torch = {t_full / t_torch:.2f})")


def torch_pass(x, y0, c0, dy):
    """Median time of torch.nn.LSTM forward + backward, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    lstm = torch.nn.LSTM(D, H, dtype=torch.float64)
    xt = torch.tensor(x, requires_grad=True)
    state = (torch.tensor(y0)[None].requires_grad_(), torch.tensor(c0)[None].requires_grad_())
    dyt = torch.tensor(dy)

    def run():
        y, _ = lstm(xt, state)
        y.backward(dyt)

    run()
    ts = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        ts.append(time.perf_counter() - start)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    return float(np.median(ts))


if __name__ == "__main__":
    main()
