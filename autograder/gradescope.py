"""The course's grader as a Gradescope autograder.

    python -m autograder gradescope OUT.zip --assignment ID [--seed N] [--timeout S]

builds the zip Gradescope asks for, for one assignment, from the same
sources as everything else:

    setup.sh          run once by Gradescope (as root, Ubuntu image): apt installs
                      Python 3.11 (the deadsnakes PPA where the release lacks it),
                      a venv in /autograder/venv, then
                      pip install -r requirements-grading.txt -c constraints.txt
                      (what grading needs: no site, notebook or test tools)
    run_autograder    run per submission: grades it and writes
                      /autograder/results/results.json
    gradescope.json   the grading settings chosen at build time, the assignment first
    grading-key       a course key made at build time (``secret.py``): the hidden
                      inputs are drawn with it, so a zip built again draws others
    autograder/ solutions/ source/ exercises/ requirements-grading.txt constraints.txt

The course is not installed: ``run_autograder`` runs the grader from the
unpacked zip (``python -m`` from its folder), so ``autograder`` and
``solutions`` are importable there and nowhere else (an installed copy
would sit in site-packages, which a student's process may read).

``run_autograder`` takes the ``.ipynb`` from /autograder/submission (any
name, any sub-folder: upload forms and zips rename things), the one whose
cells (nbgrader ``grade_id``s survive a renamed file) the assignment shares
most.  An upload whose answer and test cells are those of another of the
course's assignments scores 0, and the output says which assignment it is
and what to upload instead.  The results are ``report.gradescope_results``,
the same view as the student's ``results.json`` of a class: every visible
check, and per test cell one entry for its hidden checks ("k of n passed");
the grader's own output has ``stdout_visibility: hidden``.

Its paths can be moved with environment variables (``AUTOGRADER_ROOT``
instead of /autograder, ``AUTOGRADER_SOURCE`` for the unpacked zip,
``AUTOGRADER_PYTHON`` for the interpreter), which is how the test suite
runs it outside Gradescope.

The zip holds the reference solutions and hidden tests: it is for
instructors' accounts only (Gradescope never shows it to students).
"""
import argparse
import json
import os
import sys
import traceback
import zipfile
from pathlib import Path

from . import course

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, in its Ubuntu image, from /autograder/source.
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive
apt-get update
if ! apt-get install -y --no-install-recommends python3.11 python3.11-venv; then
    # Ubuntu releases without 3.11 in their archive: the deadsnakes PPA has it.
    apt-get install -y --no-install-recommends software-properties-common gpg-agent
    add-apt-repository -y ppa:deadsnakes/ppa
    apt-get update
    apt-get install -y --no-install-recommends python3.11 python3.11-venv
fi
python3.11 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
/autograder/venv/bin/python -m pip install -r requirements-grading.txt -c constraints.txt
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this (copied to /autograder/run_autograder) for every submission.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="${AUTOGRADER_SOURCE:-$ROOT/source}"
PYTHON="${AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
mkdir -p "$ROOT/results"
cd "$SOURCE"
exec "$PYTHON" -m autograder.gradescope run \\
    --submission "$ROOT/submission" --results "$ROOT/results/results.json"
"""

FILES = ["requirements-grading.txt", "constraints.txt"]
KEY_MEMBER = "grading-key"
FOLDERS = course.FOLDERS  # exercises/: the expected values


def build(out, assignment, seed=0, limits=None):
    """Write the Gradescope autograder zip of ``assignment`` (graded with the
    seed and ``model.Limits`` given); returns its members."""
    import dataclasses

    from . import secret
    from .model import Limits
    root = course.ROOT
    if assignment not in course.assignments():
        raise ValueError(f"no assignment {assignment!r} (have {course.assignments()})")
    settings = {"assignment": assignment, "seed": seed,
                "limits": dataclasses.asdict(limits or Limits())}
    members = []

    def add(z, name, data, mode=0o644):
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, data)
        members.append(name)

    with zipfile.ZipFile(out, "w") as z:
        add(z, "setup.sh", SETUP_SH, 0o755)
        add(z, "run_autograder", RUN_AUTOGRADER, 0o755)
        add(z, "gradescope.json", json.dumps(settings, indent=2) + "\n")
        add(z, KEY_MEMBER, secret.new_key_text(), 0o600)
        for name in FILES:
            add(z, name, (root / name).read_bytes())
        for folder in FOLDERS:
            for p in sorted((root / folder).rglob("*")):
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
                    add(z, p.relative_to(root).as_posix(), p.read_bytes())
    return members


def _grade_ids(nb):
    from . import course
    cells = nb.get("cells") if nb is not None else None
    return {gid for gid in map(course.grade_id, cells if isinstance(cells, list) else []) if gid}


def own_ids(aid):
    """The cells that tell an assignment's notebook: its answer and test cells."""
    from . import course
    return {c.grade_id for c in course.load(aid).cells if c.kind in ("answer", "tests")}


def choose(paths, assignment):
    """(notebook path, parsed notebook or None, problem): of the uploaded
    notebooks, the one that shares most cells with ``assignment``."""
    from . import grade
    known = own_ids(assignment)
    best = None
    for p in paths:
        nb, problem = grade.read_submission(p)
        rank = (len(_grade_ids(nb) & known) if nb is not None else -1,
                p.stem == assignment, nb is not None)
        if best is None or rank > best[0]:
            best = (rank, p, nb, problem)
    return best[1:] if best else (None, None, None)


def other_assignment(nb, assignment):
    """The course's assignment whose cells the notebook carries, if that is
    not ``assignment`` (it shares more answer and test cells with it)."""
    from . import course
    ids = _grade_ids(nb)
    mine = len(ids & own_ids(assignment))
    rivals = [(len(ids & own_ids(a)), a) for a in course.assignments() if a != assignment]
    best = max(rivals, default=(0, None))
    return best[1] if best[0] > mine else None


def notebooks_in(folder):
    return sorted(p for p in Path(folder).rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and not p.is_symlink() and p.is_file())


def run(submission, results, settings=None):
    """Grade the notebook in ``submission`` into Gradescope's ``results`` file."""
    import dataclasses

    from . import course, grade, model, report, secret, wire
    from .processes import ScratchRoot, become_subreaper
    become_subreaper()
    cfg_path = course.ROOT / "gradescope.json"
    cfg = settings or (json.loads(cfg_path.read_text()) if cfg_path.exists() else {})
    aid = cfg.get("assignment")
    if aid not in course.assignments():
        raise ValueError(f"this autograder names no assignment of the course ({aid!r}): "
                         "build it with --assignment")
    path, nb, problem = choose(notebooks_in(submission), aid)
    max_score = course.load(aid).max_score
    seed = cfg.get("seed", 0)
    other = other_assignment(nb, aid) if nb is not None else None
    name = wire.clean(path.name, 120) if path is not None else ""
    if path is None:
        result = model.not_graded(model.Status.MISSING, max_score, [
            "No .ipynb file was found in your submission: upload the notebook itself."], seed)
    elif nb is None:
        result = model.not_graded(model.Status.UNREADABLE, max_score, [problem], seed)
    elif other:
        result = model.not_graded(model.Status.UNREADABLE, max_score, [
            f"{name} is the notebook of the assignment {other} (its answer and test "
            f"cells are that assignment's), but this is the assignment {aid}: it was not "
            f"graded and scored 0. Upload your {aid}.ipynb here, and {name} to the "
            f"assignment {other}."], seed)
    else:
        limits = model.Limits(**cfg.get("limits", {}))
        key_path = course.ROOT / KEY_MEMBER
        key = None
        if key_path.exists():  # unzipped with whatever mode: it is the grader's own file
            os.chmod(key_path, 0o600)
            key = secret.load_or_create(key_path)
        with ScratchRoot():
            result = grade.grade_notebook(course.load(aid), nb, limits, seed, key)
        result = dataclasses.replace(
            result, notes=(f"Graded {name} as assignment {aid}.",) + result.notes)
    out = report.gradescope_results(result)
    Path(results).parent.mkdir(parents=True, exist_ok=True)
    Path(results).write_text(report.results_json(result))
    print(f"{aid}: {out['score']:g} / {out['max_score']:g}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m autograder.gradescope")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="grade one Gradescope submission (used by run_autograder)")
    r.add_argument("--submission", required=True)
    r.add_argument("--results", required=True)
    args = p.parse_args(argv)
    try:
        run(args.submission, args.results)
    except Exception:  # say so in the results Gradescope shows, not in a blank page
        traceback.print_exc()
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps({
            "score": 0.0, "output": "The autograder itself failed on this submission; "
                                    "your instructor has been told (see the grader's log).",
            "tests": [], "stdout_visibility": "hidden"}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
