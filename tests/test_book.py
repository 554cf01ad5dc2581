"""The book builds with every warning treated as an error."""
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_book_builds_without_warnings(tmp_path):
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else shutil.which("jupyter-book"), "build", str(ROOT),
           "-W", "-n", "--keep-going", "--path-output", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    html = tmp_path / "_build" / "html"
    for page in ["book/intro", "book/notation", "book/glossary"] + \
            [f"book/{a}" for a in ["dcl_backprop", "rnn_bptt", "lstm", "dimensionality"]]:
        assert (html / f"{page}.html").exists(), page
    # The exercise notebooks are offered for download from the chapter pages.
    downloads = {p.name for p in html.glob("_downloads/*/*.ipynb")}
    assert {f"{a}.ipynb" for a in ["dcl_backprop"]} <= downloads
