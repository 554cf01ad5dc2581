"""Time of a clean build of the book and of a rebuild without changes.

Builds the book as `make book` does (`jupyter-book build . -W -n
--keep-going`) into a fresh temporary folder:

clean     empty output folder: every chapter executed, every page written;
rebuild   the same command again, nothing changed: execution comes from
          _build/.jupyter_cache and Sphinx reads no source again;
floor     the same configuration and extensions on a one-page book, built
          clean then again: Sphinx's own start-up and the theme's fixed
          work, which a rebuild cannot go below.

Each rebuild figure is the median of --repeat runs.  Numbers only: nothing
is asserted.  Run from the repository root:  python benchmarks/bench_book.py
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def jupyter_book():
    local = Path(sys.executable).parent / "jupyter-book"
    return str(local) if local.exists() else "jupyter-book"


def build(source, out):
    """Seconds for one `jupyter-book build` of source into out (which must succeed)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    start = time.perf_counter()
    proc = subprocess.run([jupyter_book(), "build", str(source), "-W", "-n", "--keep-going",
                           "--path-output", str(out)],
                          capture_output=True, text=True, cwd=source, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build of {source} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds


def one_page_book(folder):
    """The book's configuration and extensions around a single short page."""
    folder.mkdir()
    shutil.copy(ROOT / "_config.yml", folder / "_config.yml")
    (folder / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (folder / "book").mkdir()
    (folder / "book" / "intro.md").write_text("# A page\n\nOne paragraph, $x^2$.\n")
    for name in ("_ext", "_static"):
        (folder / "book" / name).symlink_to(ROOT / "book" / name)
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rebuilds to take the median of")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-book-") as tmp:
        tmp = Path(tmp)
        clean = build(ROOT, tmp / "book")
        rebuild = statistics.median(build(ROOT, tmp / "book") for _ in range(args.repeat))
        small = one_page_book(tmp / "one-page-src")
        floor_clean = build(small, tmp / "one-page")
        floor = statistics.median(build(small, tmp / "one-page") for _ in range(args.repeat))
    print(f"clean build                    {clean:7.1f} s")
    print(f"no-change rebuild (median of {args.repeat}) {rebuild:7.1f} s")
    print(f"one-page book, clean           {floor_clean:7.1f} s")
    print(f"one-page book, rebuild (floor) {floor:7.1f} s")
    print(f"rebuild above the floor        {rebuild - floor:7.1f} s")


if __name__ == "__main__":
    main()
