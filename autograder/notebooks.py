"""Generates the learner notebooks in ``exercises/`` with nbgrader.

source/<id>/<id>.md  --(course.compute_expected: the reference runs the EXPECTED blocks)
                     --(course.instructor_notebook)-->  instructor notebook
                     --(nbgrader generate_assignment)-->  exercises/<id>/<id>.ipynb

The learner notebooks are committed so the book can offer them for download;
``stale()`` tells whether any differs from a fresh generation.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from . import course


def generate(assignment_id, workdir):
    """Run nbgrader in a scratch course folder; return the release notebook."""
    a = course.load(assignment_id)
    root = Path(workdir)
    src = root / "source" / assignment_id
    src.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text("c = get_config()\n")
    packed = course.pack_expected(assignment_id, course.compute_expected(a))
    nbformat.write(course.instructor_notebook(a, packed), src / f"{assignment_id}.ipynb")
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", assignment_id,
         "--force", "--log-level=WARN", f"--CourseDirectory.root={root}",
         f"--CourseDirectory.db_url=sqlite:///{root / 'gradebook.db'}"],
        check=True, cwd=root)
    release = root / "release" / assignment_id / f"{assignment_id}.ipynb"
    return nbformat.read(release, as_version=4)


def _text(nb):
    return nbformat.writes(nb) + "\n"


def build(ids=None, check_only=False):
    """Regenerate (or with check_only, just compare) the learner notebooks.

    Returns the ids whose committed notebook differs from a fresh one.
    """
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for aid in ids or course.assignments():
            fresh = _text(generate(aid, tmp))
            target = course.EXERCISES / aid / f"{aid}.ipynb"
            if not target.exists() or target.read_text() != fresh:
                stale.append(aid)
                if not check_only:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(fresh)
    return stale


def fill_with_reference(release, assignment_id):
    """A learner notebook with every answer cell holding the reference code."""
    a = course.load(assignment_id)
    answers = {c.grade_id: c.source for c in a.cells if c.kind == "answer"}
    nb = nbformat.from_dict(release)
    for cell in nb.cells:
        if course.grade_id(cell) in answers:
            cell.source = answers[course.grade_id(cell)]
    return nb
