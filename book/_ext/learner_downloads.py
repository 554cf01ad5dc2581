"""Everything a learner downloads to start, built with the site.

Before the pages are read, this extension packs the exercise notebooks
(``exercises/<id>/<id>.ipynb``) and the learner's pinned requirements
(``learner/requirements.txt``) into one zip, ``book/_generated/<ZIP_NAME>``
(ignored by git); the Get started page offers it with ``{download}``, so
Sphinx publishes it under ``_downloads/``.  The zip unpacks into a single
folder holding the notebooks and ``requirements.txt``.

The archive is byte for byte the same for the same files (sorted entries,
fixed dates and permissions), and it is rewritten only when its content
changes.
"""
import io
import os
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXERCISES = ROOT / "exercises"
REQUIREMENTS = ROOT / "learner" / "requirements.txt"
FOLDER = "backprop-exercises"          # what the zip unpacks into
ZIP_NAME = f"{FOLDER}.zip"
TARGET = ROOT / "book" / "_generated" / ZIP_NAME
EPOCH = (1980, 1, 1, 0, 0, 0)          # the earliest date a zip can hold


def contents():
    """{name inside the zip: source file}: every exercise notebook and the requirements."""
    files = {f"{FOLDER}/{p.name}": p for p in sorted(EXERCISES.glob("*/*.ipynb"))
             if p.stem == p.parent.name}
    files[f"{FOLDER}/requirements.txt"] = REQUIREMENTS
    return files


def archive():
    """The zip's bytes, the same for the same files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in sorted(contents().items()):
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    return buffer.getvalue()


def build(app=None):
    """Write the zip when it is missing or stale (atomically: builds may run side by side)."""
    data = archive()
    if TARGET.exists() and TARGET.read_bytes() == data:
        return
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".zip-", dir=TARGET.parent)
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, TARGET)


def setup(app):
    app.connect("builder-inited", build)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
