"""Execution time of each code cell of a book page, run as the build runs it.

Executes one page (MyST Markdown, such as book/dcl_backprop.md) in a fresh
kernel started in book/ with the repository on PYTHONPATH, as `make book`
does, and prints the wall-clock and CPU time of every cell that takes at
least --min seconds, named by its figure or its section and first line; then
the totals.  CPU time (of the kernel process) moves less than wall-clock time
when other work shares the machine.  Numbers only: nothing is asserted.

    python benchmarks/bench_page_cells.py book/dcl_backprop.md [--min 0.5]
"""
import argparse
import json
import os
import sys
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]

# Registered in the kernel before the page's cells: one (wall, cpu) pair per cell.
RECORDER = """
import time as _bench_time
_bench_times = []
def _bench_pre(info):
    _bench_times.append([_bench_time.perf_counter(), _bench_time.process_time()])
def _bench_post(result):
    if not _bench_times:   # the end of the cell that registered these hooks
        return
    start = _bench_times[-1]
    _bench_times[-1] = [_bench_time.perf_counter() - start[0], _bench_time.process_time() - start[1]]
get_ipython().events.register("pre_run_cell", _bench_pre)
get_ipython().events.register("post_run_cell", _bench_post)
"""
REPORT = 'import json as _bench_json; print(_bench_json.dumps(_bench_times[:-1]))'


def label(cell, heading):
    """The figure a cell draws, else its section and first line of code."""
    figure = cell.metadata.get("mystnb", {}).get("figure", {}).get("name")
    first = next((line for line in cell.source.splitlines()
                  if line.strip() and not line.startswith(("#", "%"))), "")
    return figure or f"{heading[:40]}: {first[:50]}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="a MyST Markdown page of the book")
    parser.add_argument("--min", type=float, default=0.5, help="list cells taking at least this (s)")
    args = parser.parse_args()

    nb = jupytext.read(args.page)
    heading, labels = "(top)", []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = next((line.lstrip("# ") for line in reversed(cell.source.splitlines())
                            if line.startswith("#")), heading)
        elif cell.cell_type == "code":
            labels.append(label(cell, heading))
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = [nbformat.v4.new_code_cell(RECORDER)] + code + [nbformat.v4.new_code_cell(REPORT)]

    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    NotebookClient(nb, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "book")}}).execute()
    times = json.loads(nb.cells[-1].outputs[0]["text"])

    print(f"{args.page}: {len(code)} code cells")
    print(f"{'wall (s)':>9} {'cpu (s)':>8}  cell")
    for (wall, cpu), name in zip(times, labels):
        if wall >= args.min:
            print(f"{wall:9.2f} {cpu:8.2f}  {name}")
    print(f"{sum(t[0] for t in times):9.2f} {sum(t[1] for t in times):8.2f}  all cells")


if __name__ == "__main__":
    sys.exit(main())
