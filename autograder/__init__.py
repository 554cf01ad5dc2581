"""The course's grading pipeline: notebook generation, sandboxed grading, reports.

python -m autograder grade SUBMITTED --out OUT     grade a class
python -m autograder notebooks [--check]           regenerate learner notebooks
python -m autograder gradescope OUT.zip --assignment ID   package it for Gradescope
"""
import os
import sys

# nbgrader's gradebook runs the ``alembic`` command it installs beside the
# interpreter; make it findable even when the virtualenv is not activated.
_bin = os.path.dirname(sys.executable)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")
