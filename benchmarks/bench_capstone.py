"""Time of the capstone run of chapter 3 (solutions/charmodel.py) with the reference functions.

Runs the book's configuration and the exercise notebook's shortened one on
the course's own text (book/*.md), as the book does, and prints for each the
wall-clock and CPU seconds, the held-out bits per character reached, and
the load average of the machine before and after (other work on the same
cores slows the run down).  Numbers only: nothing is asserted.  Run from the
repository root:  python benchmarks/bench_capstone.py [--short-only]
"""
import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solutions import charmodel  # noqa: E402
from solutions.dcl_backprop import (adam_step, dense_backward, dense_forward,  # noqa: E402
                                    softmax_cross_entropy)
from solutions.lstm import lstm_backward, lstm_forward, lstm_step_forward  # noqa: E402
from solutions.rnn_bptt import batchify, bits_per_char, clip_grad_norm, draw_next  # noqa: E402

FUNCTIONS = dict(lstm_forward=lstm_forward, lstm_backward=lstm_backward,
                 lstm_step_forward=lstm_step_forward, softmax_cross_entropy=softmax_cross_entropy,
                 adam_step=adam_step, clip_grad_norm=clip_grad_norm, batchify=batchify,
                 bits_per_char=bits_per_char, draw_next=draw_next, dense_forward=dense_forward,
                 dense_backward=dense_backward)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-only", action="store_true", help="only the notebook's run")
    args = parser.parse_args()
    train_text, val_text = charmodel.course_text(ROOT / "book")
    vocab = charmodel.vocabulary(train_text + val_text)
    train_ids, val_ids = charmodel.encode(train_text, vocab), charmodel.encode(val_text, vocab)
    print(f"text: {len(train_text):,} training and {len(val_text):,} held-out characters, "
          f"K = {len(vocab)}; {os.cpu_count()} cores")
    runs = [("notebook (short)", True)] + ([] if args.short_only else [("book", False)])
    for name, short in runs:
        config = charmodel.capstone_config(short=short)
        load_before = os.getloadavg()[0]
        cpu = time.process_time()
        result = charmodel.run_capstone(train_ids, val_ids, vocab, config, functions=FUNCTIONS)
        cpu = time.process_time() - cpu
        print(f"{name:17s} H={config['H']} N={config['N']} k={config['seq_len']} "
              f"updates={config['updates']}: {result['seconds']:.1f} s wall, {cpu:.1f} s CPU, "
              f"held-out {result['curve'][-1][1]:.3f} bits per character "
              f"(load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)", flush=True)


if __name__ == "__main__":
    main()
