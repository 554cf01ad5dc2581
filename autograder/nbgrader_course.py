"""OUT as an nbgrader course: what nbgrader's own tools expect around our grades.

Reading: ``python -m autograder grade`` takes a course root as nbgrader lays
it out (``COURSE/submitted/<student>/<assignment>/``, which is also what
``nbgrader zip_collect`` fills from an LMS download) as well as the
submitted folder itself (``submitted_folder``); a ``timestamp.txt`` beside a
notebook is the submission's time, as for nbgrader.

Writing (the ``Store`` calls ``CourseRoot``), OUT becomes a course root:

    nbgrader_config.py                          CourseDirectory.root = this folder
    gradebook.db                                assignments, notebooks, grade cells
                                                (test cells), solution cells (answer
                                                cells), source cells with checksums;
                                                per submission: its timestamp, a grade
                                                per test cell, a comment per answer cell
    source/<id>/<id>.ipynb                      the instructor notebook (solutions and
                                                hidden tests: instructors only, as in
                                                any nbgrader course)
    release/<id>/<id>.ipynb                     the learner notebook (exercises/)
    submitted/<student>/<id>/<id>.ipynb         a copy of what was graded (+ timestamp.txt)
    autograded/<student>/<id>/<id>.ipynb        the learner's notebook with the check
                                                results as the outputs of its test cells

so that the formgrader, started in OUT, lists the assignments and shows each
submission as autograded with our scores, where manual points and comments
can be added; ``nbgrader export`` and ``nbgrader generate_feedback`` work on
it.  A later grading keeps manual points and comments (and, as nbgrader
does, flags such a cell for review).

The autograded notebook is built from the learner's notebook and the
release notebook, never from the source: read-only and test cells are put
back as released (the test cells' visible checks only, with their nbgrader
metadata and checksums), answer cells and the learner's own cells keep the
learner's code, and the outputs are the check results (✓/✗ and the message
of each visible check, hidden checks only as "k of n passed"), what the
learner saved (text and PNG/JPEG images only: no HTML or script reaches the
formgrader's page), and the errors the grader met in each cell.  Nothing in
it comes from the hidden pass except that count.

nbgrader's own ``autograde`` cannot grade these notebooks: hidden checks run
in the grader's process against a sandbox (``grade.py``), and ``ref`` and
``grading_rng`` exist only there.
"""
import functools
import json
import re
import shutil
import sys
import warnings
from pathlib import Path

import nbformat

from . import course, wire
from .model import NO_MANUAL, Comment, Manual
from .report import check_lines

CONFIG = "nbgrader_config.py"
MARK = "# Written by `python -m autograder grade`"
TIMESTAMP = "timestamp.txt"
OUTPUT_CHARS = 10_000            # characters kept of one output of the learner's
OUTPUT_BUDGET = 2 * 2**20        # bytes of the learner's outputs kept per notebook
MAX_CELLS = 1000                 # cells of a submission looked at (as ``grade.plan``)
IMAGES = ("image/png", "image/jpeg")
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")


def submitted_folder(path):
    """The folder of ``<student>/<assignment>/`` folders: ``path/submitted`` when
    ``path`` is an nbgrader course root, else ``path`` itself ("submitted" is
    no student's name: ``classroom.RESERVED``)."""
    p = Path(path)
    inner = p / "submitted"
    return inner if inner.is_dir() and not inner.is_symlink() else p


def timestamp(folder):
    """(text, UTC datetime) of ``folder/timestamp.txt``, or None (none, or not a time)."""
    from nbgrader.utils import parse_utc
    if folder is None:
        return None
    p = Path(folder) / TIMESTAMP
    try:
        if p.is_symlink() or not p.is_file() or p.stat().st_size > 200:
            return None
        text = p.read_text(encoding="utf-8").strip()
        return (text, parse_utc(text)) if text else None
    except (OSError, UnicodeError, ValueError, OverflowError):
        return None


@functools.lru_cache(maxsize=None)
def release(aid):
    """The learner notebook of an assignment, as committed in exercises/."""
    return nbformat.read(course.EXERCISES / aid / f"{aid}.ipynb", as_version=4)


def source_notebook(a):
    """The instructor notebook (``course.instructor_notebook``) with the
    expected values of the release notebook after the check helpers, and its
    generated cells as the release notebook has them (no book needed)."""
    nb = course.instructor_notebook(a, expand=False)
    made = {course.grade_id(c): c.source for c in release(a.id).cells}
    for c in nb.cells:
        if c.cell_type == "code" and c.source.startswith("# generated:"):
            c.source = made.get(course.grade_id(c), c.source)
    expected = [c for c in release(a.id).cells if course.grade_id(c) == course.EXPECTED_CELL]
    at = next((i + 1 for i, c in enumerate(nb.cells) if course.grade_id(c) == "checks"), 0)
    nb.cells[at:at] = [nbformat.from_dict(json.loads(json.dumps(c))) for c in expected]
    return nb


# ----------------------------------------------------------------------------
# The autograded notebook (a view of the record and the submitted copy)


def _text(value):
    if isinstance(value, list):
        value = "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def _learner_outputs(cell, budget):
    """The outputs a learner saved in ``cell``: text, tracebacks, PNG and JPEG
    images, within what is left of ``budget`` ([bytes])."""
    kept = []
    outputs = cell.get("outputs")
    for o in outputs if isinstance(outputs, list) else []:
        if not isinstance(o, dict):
            continue
        kind = o.get("output_type")
        if kind == "stream":
            new = nbformat.v4.new_output(
                "stream", name="stderr" if o.get("name") == "stderr" else "stdout",
                text=wire.clean(_text(o.get("text")), OUTPUT_CHARS))
        elif kind == "error":
            tb = o.get("traceback") if isinstance(o.get("traceback"), list) else []
            new = nbformat.v4.new_output(
                "error", ename=wire.clean(_text(o.get("ename")), 200),
                evalue=wire.clean(_text(o.get("evalue")), OUTPUT_CHARS),
                traceback=[wire.clean(x, OUTPUT_CHARS) for x in tb[:50] if isinstance(x, str)])
        elif kind in ("execute_result", "display_data"):
            data = o.get("data") if isinstance(o.get("data"), dict) else {}
            keep = {k: data[k] for k in IMAGES
                    if isinstance(data.get(k), str) and BASE64.fullmatch(data[k])}
            if "text/plain" in data:
                keep["text/plain"] = wire.clean(_text(data["text/plain"]), OUTPUT_CHARS)
            if not keep:
                continue
            new = nbformat.v4.new_output("display_data", data=keep)
        else:
            continue
        size = len(json.dumps(new))
        if size > budget[0]:
            budget[0] = 0
            kept.append(nbformat.v4.new_output(
                "stream", name="stderr", text="(the notebook's other outputs were left out)\n"))
            break
        budget[0] -= size
        kept.append(new)
    return kept


def _grader_errors(errors):
    return [nbformat.v4.new_output("stream", name="stderr",
                                   text=f"When graded, this cell raised:\n{e}\n") for e in errors]


def quoted(text):
    """Markdown that shows ``text`` as it is: a fenced block longer than any
    run of backticks in it, so no markdown, link, image or HTML of the text
    is ever interpreted (a renderer escapes the inside of a code block)."""
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text)), default=0))
    return f"{fence}text\n{text}\n{fence}"


def _header(result, status, manual):
    """A first markdown cell: the score (ours), and, quoted as text, what the
    learner's feedback says besides the checks (those texts may quote the
    submission: a grade id, a file name)."""
    from .report import capped, manual_note, score_line
    line = f"**Autograder**: {score_line(result, manual)}"
    if status != "graded":
        line += f" ({status})"
    note = manual_note(result, manual)
    if note:
        line += f"  \n{note}"
    said = [" ".join(x.split()) for x in capped(result.notes, "more notes") + capped(result.events)]
    said += [f"Comment on {c.cell}: {c.text}" for c in manual.comments]
    return nbformat.v4.new_markdown_cell(line + ("\n\n" + quoted("\n".join(said)) if said else ""))


def _escape_markdown(source, released):
    """A learner's markdown cell: the course's own as it is, anything else
    quoted as text (``quoted``)."""
    return source if source in released else quoted(source)


def _own_code(cell, known):
    """Whether a code cell is one grade.plan runs as the learner's own: not a cell of the
    course, and not empty (a cell with a course id runs as the course's cell; an id of
    nothing known, as the learner's own)."""
    gid = course.grade_id(cell)
    if gid:
        return wire.clean(gid, 200) not in known
    return bool(_text(cell.get("source", "")).strip())


def autograded_notebook(a, nb, result, manual=None):
    """The autograded notebook of one submission (see the module docstring).

    a: course.Assignment; nb: the parsed submission, or None (then the
    release notebook, for a submission that could not be read or graded);
    result: a ``model.Result``; manual: a ``model.Manual``.
    """
    manual = manual or NO_MANUAL
    status = result.status.value
    rel = release(a.id)
    known = {course.grade_id(c): c for c in rel.cells if course.grade_id(c)}
    tests = {}
    for c in result.checks:
        tests.setdefault(c.cell, []).append(c)
    errors = {}
    for err in result.cell_errors:
        errors.setdefault(err.cell, []).append(err.error)
    released_md = {c.source for c in rel.cells if c.cell_type == "markdown"}
    budget = [OUTPUT_BUDGET]

    cells = nb.get("cells") if nb is not None else None
    by_id, after = {}, {None: []}  # answered cells; the learner's own cells after each
    last = None
    cells = cells[:MAX_CELLS] if isinstance(cells, list) else []
    # named as grade.plan names them, by the heading above (the labels of cell errors)
    labels = course.own_cell_labels(cells, {
        i for i, c in enumerate(cells) if isinstance(c, dict) and c.get("cell_type") == "code"
        and _own_code(c, known)}, course.headings(a))
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            continue
        gid = course.grade_id(cell)
        gid = wire.clean(gid, 200) if gid else None
        if gid in known:
            by_id[gid] = cell  # the last copy wins, as in ``grade.plan``
            last = gid
        else:
            after.setdefault(last, []).append((labels.get(i, ""), cell))

    def own(label, cell, n):
        kind, src = cell["cell_type"], _text(cell.get("source"))
        if kind == "code":
            new = nbformat.v4.new_code_cell(src)
            new.outputs = _learner_outputs(cell, budget) + _grader_errors(errors.get(label, []))
        elif kind == "markdown":
            new = nbformat.v4.new_markdown_cell(_escape_markdown(src, released_md))
        else:  # a raw cell: shown as text too (nbconvert would pass some raw HTML on)
            new = nbformat.v4.new_markdown_cell(quoted(src))
        new.id = f"learner-{n}"
        return new

    out = nbformat.v4.new_notebook(metadata=json.loads(json.dumps(rel.metadata)))
    header = _header(result, status, manual)
    header.id = "autograder-result"
    out.cells.append(header)
    n = 0
    for label, cell in after[None]:
        n += 1
        out.cells.append(own(label, cell, n))
    for r in rel.cells:
        gid = course.grade_id(r)
        if not gid:
            continue  # the learner's copy of a released markdown cell came in as theirs
        new = nbformat.from_dict(json.loads(json.dumps(r)))
        meta = r.metadata["nbgrader"]
        if meta.get("grade") and gid in tests:
            text = "\n".join(check_lines(tests[gid])) + "\n"
            new.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        elif r.cell_type == "code":
            mine = by_id.get(gid)
            if meta.get("solution") and mine is not None:
                new.source = _text(mine.get("source"))
            new.outputs = ((_learner_outputs(mine, budget) if mine is not None else [])
                           + _grader_errors(errors.get(course.cell_label(a, gid), [])))
        out.cells.append(new)
        for label, cell in after.get(gid, []):
            n += 1
            out.cells.append(own(label, cell, n))
    return out


def unanswered(a, nb):
    """Answer cells of an autograded notebook left as released (nbgrader's
    "No response." comment)."""
    stubs = {course.grade_id(c): c.source for c in release(a.id).cells
             if c.metadata.get("nbgrader", {}).get("solution")}
    return {course.grade_id(c) for c in nb.cells if course.grade_id(c) in stubs
            and c.source.strip() == stubs[course.grade_id(c)].strip()}


# ----------------------------------------------------------------------------
# The gradebook


class GradebookWriter:
    """nbgrader's gradebook, open for a run (see the module docstring).

    assignments: {id: course.Assignment}.  ``add`` records one submission
    (a failure costs that student's grades only); ``close`` when done.
    """

    def __init__(self, db_url, assignments):
        import nbgrader.api
        from nbgrader.api import Gradebook  # slow to import: only where it is needed
        try:
            # A new gradebook asks the `alembic` command for the schema version
            # (2 s of start-up); reading it from nbgrader's own migrations is the
            # same answer without the subprocess.
            from alembic.script import ScriptDirectory
            from nbgrader.dbutil import ALEMBIC_DIR
            head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
            if head:
                nbgrader.api.get_alembic_version = lambda: head
        except Exception:
            pass
        self.assignments = assignments
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        # nbgrader 0.9 trips SQLAlchemy 2's autoflush warnings; harmless here.
        warnings.simplefilter("ignore")
        self.gb = Gradebook(db_url)
        self.extra = {a.id: {c.grade_id for c in a.tests if c.extra_credit}
                      for a in assignments.values()}
        # Only the assignments with a submission are in the gradebook (and so
        # in the formgrader and `nbgrader export`): the others are defined
        # when their first submission is recorded.
        self.defined = set()
        for name in sorted({x.name for x in self.gb.assignments} & set(assignments)):
            self._define(assignments[name])

    def _define(self, a):
        """The assignment's notebook and cells as nbgrader's generate_assignment
        records them, from the release notebook (so no solution and no hidden
        test is in the gradebook); cells the course no longer has go."""
        from nbgrader import utils
        self.defined.add(a.id)
        gb, rel = self.gb, release(a.id)
        gb.update_or_create_assignment(a.id)
        notebook = gb.update_or_create_notebook(
            a.id, a.id, kernelspec=json.dumps(rel.metadata.get("kernelspec", {})))
        grade, solution, source = {}, set(), {}
        for cell in rel.cells:
            gid = course.grade_id(cell)
            if not gid:
                continue
            meta = cell.metadata["nbgrader"]
            if meta.get("grade"):
                # An extra-credit cell adds nothing to the maximum; its points
                # go to the grade's extra_credit, as nbgrader keeps them.
                grade[gid] = {"max_score": 0.0 if gid in self.extra[a.id] else
                              float(meta["points"]), "cell_type": cell.cell_type}
            if meta.get("solution"):
                solution.add(gid)
            if utils.is_grade(cell) or utils.is_solution(cell) or utils.is_locked(cell):
                source[gid] = {"cell_type": cell.cell_type, "locked": utils.is_locked(cell),
                               "source": cell.source,
                               "checksum": meta.get("checksum") or utils.compute_checksum(cell)}
        self._prune(notebook, grade, solution, source)
        for gid, info in grade.items():
            gb.update_or_create_grade_cell(gid, a.id, a.id, **info)
        for gid in solution:
            gb.update_or_create_solution_cell(gid, a.id, a.id)
        for gid, info in source.items():
            gb.update_or_create_source_cell(gid, a.id, a.id, **info)
        for sub in notebook.submissions:
            self._complete(sub)
        gb.db.commit()

    def _prune(self, notebook, grade, solution, source):
        db = self.gb.db
        for cell in list(notebook.grade_cells):
            if cell.name not in grade:
                for g in list(cell.grades):
                    db.delete(g)
                db.delete(cell)
        for cell in list(notebook.solution_cells):
            if cell.name not in solution:
                for c in list(cell.comments):
                    db.delete(c)
                db.delete(cell)
        for cell in list(notebook.source_cells):
            if cell.name not in source:
                db.delete(cell)
        db.commit()

    def _complete(self, sub):
        """A grade for every grade cell and a comment for every solution cell
        of a submitted notebook (cells added after it was first recorded)."""
        from nbgrader.api import Comment, Grade
        graded = {g.cell_id for g in sub.grades}
        commented = {c.cell_id for c in sub.comments}
        for cell in sub.notebook.grade_cells:
            if cell.id not in graded:
                self.gb.db.add(Grade(cell_id=cell.id, notebook=sub))
        for cell in sub.notebook.solution_cells:
            if cell.id not in commented:
                self.gb.db.add(Comment(cell_id=cell.id, notebook=sub))

    def add(self, student, aid, result, autograded=None, when=None):
        """See ``_add``; ``result`` is a ``model.Result``."""
        self._add(student, aid, result, autograded, when)

    def _add(self, student, aid, result, autograded=None, when=None):
        """Record a submission: its time, our score per test cell, and the
        answer cells left as released ("No response.", as nbgrader says).
        A grader's manual score or comment stays; a cell that has a manual
        score is marked for review, as nbgrader's autograde marks it."""
        if aid not in self.assignments:
            return
        gb, a = self.gb, self.assignments[aid]
        if aid not in self.defined:
            self._define(a)
        try:
            gb.update_or_create_student(student)
            sub = gb.update_or_create_submission(aid, student)
            sub.timestamp = when
            nb_sub = gb.find_submission_notebook(aid, aid, student)
            self._complete(nb_sub)
            gb.db.flush()
            per_cell = {c.grade_id: 0.0 for c in a.tests}
            for c in result.checks:
                per_cell[c.cell] = per_cell.get(c.cell, 0.0) + c.score
            for gid, score in per_cell.items():
                grade = gb.find_grade(gid, aid, aid, student)
                if gid in self.extra[aid]:
                    grade.auto_score, grade.extra_credit = 0.0, round(score, 4)
                else:
                    grade.auto_score = round(score, 4)
                grade.needs_manual_grade = grade.manual_score is not None
            empty = unanswered(a, autograded) if autograded is not None else set()
            for c in nb_sub.comments:
                c.auto_comment = "No response." if c.cell.name in empty else None
            gb.db.commit()
        except Exception as exc:  # that student's grades only
            gb.db.rollback()
            print(f"could not record {student}/{aid} in the gradebook: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)

    def manual(self, student, aid):
        """What a grader changed by hand for one submission (``model.Manual``):
        the gradebook's total where a cell has a manual score (or extra credit
        on a cell that has none of its own), and the comments written on
        answer cells."""
        try:
            sub = self.gb.find_submission_notebook(aid, aid, student)
        except Exception:
            return NO_MANUAL
        changed = any(g.manual_score is not None
                      or (g.extra_credit and g.cell.name not in self.extra.get(aid, ()))
                      for g in sub.grades)
        comments = tuple(Comment(c.cell.name, wire.clean(c.manual_comment, 4000))
                         for c in sorted(sub.comments, key=lambda c: c.cell.name)
                         if c.manual_comment)
        if not changed and not comments:
            return NO_MANUAL
        return Manual(score=float(sub.score) if changed else None, comments=comments)

    def close(self):
        self.gb.close()
        self._warnings.__exit__(None, None, None)


# ----------------------------------------------------------------------------
# OUT as a course root


def _ours(path):
    """May we write ``path``: it is absent or we wrote it."""
    if not path.exists():
        return True
    try:
        if path.suffix == ".ipynb":
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
            return bool(meta.get("autograder", {}).get("written_by_grader"))
        return path.read_text(encoding="utf-8").startswith(MARK)
    except (OSError, ValueError, AttributeError):
        return False


def write_notebook(path, nb):
    path.parent.mkdir(parents=True, exist_ok=True)
    nb.metadata["autograder"] = {"written_by_grader": True}
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8", errors="replace")


def config_text(db_url, default_db):
    db = ('"sqlite:///" + os.path.join(root, "gradebook.db")' if default_db else repr(db_url))
    return (f"{MARK}: this folder is an nbgrader\n"
            "# course root (source/, submitted/, autograded/, gradebook.db). Start the\n"
            "# formgrader here (`jupyter lab`, then Nbgrader > Formgrader); `nbgrader export`\n"
            "# and `nbgrader generate_feedback ASSIGNMENT` work here too. Do not run\n"
            "# `nbgrader autograde` or `generate_assignment` here: see the course's README.\n"
            "import os\n\n"
            "c = get_config()  # noqa: F821 (nbgrader defines it)\n"
            "root = os.path.dirname(os.path.abspath(__file__))\n"
            "c.CourseDirectory.root = root\n"
            f"c.CourseDirectory.db_url = {db}\n"
            "# `nbgrader export` writes beside the grader's own grades.csv, never over it\n"
            "# (ExportPlugin, not CsvExportPlugin: `nbgrader export --to=FILE` still wins)\n"
            'c.ExportPlugin.to = os.path.join(root, "nbgrader-grades.csv")\n')


class CourseRoot:
    """Writes OUT's nbgrader course files and gradebook (see the module docstring)."""

    def __init__(self, out, db_url, assignments, default_db=True):
        self.out = Path(out)
        self.assignments = assignments
        config = self.out / CONFIG
        if _ours(config):
            config.write_text(config_text(db_url, default_db), encoding="utf-8")
        for a in assignments.values():
            for folder, nb in (("source", lambda: source_notebook(a)),
                               ("release", lambda: nbformat.from_dict(release(a.id)))):
                path = self.out / folder / a.id / f"{a.id}.ipynb"
                if _ours(path):
                    write_notebook(path, nb())
        self.gradebook = GradebookWriter(db_url, assignments)

    def keep_submitted(self, record):
        """The copy of what was graded in submitted/ (with its timestamp.txt)."""
        sub = record.submission
        aid = sub.assignment
        target = self.out / "submitted" / sub.student / aid
        try:
            self._copy(sub.folder, Path(sub.path) if sub.path else None, target, aid,
                       timestamp(sub.folder))
        except Exception as exc:
            print(f"could not copy {sub.student}/{aid} into submitted/: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)

    def submitted(self, record):
        """(the parsed copy in submitted/ or None, its timestamp)."""
        from .grade import read_submission
        sub = record.submission
        folder = self.out / "submitted" / sub.student / sub.assignment
        nb = None
        if record.result.graded:
            nb, _ = read_submission(folder / f"{sub.assignment}.ipynb")
        return nb, timestamp(folder)

    def add(self, record):
        """One submission's autograded notebook and grades; returns
        (the autograded notebook or None, the gradebook's ``model.Manual``)."""
        sub = record.submission
        a = self.assignments[sub.assignment]
        nb, when = self.submitted(record)
        try:
            autograded = autograded_notebook(a, nb, record.result)
        except Exception as exc:
            autograded = None
            print(f"could not make the autograded notebook of {sub.student}/{sub.assignment}: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
        self.gradebook.add(sub.student, sub.assignment, record.result, autograded,
                           when[1] if when else None)
        manual = self.gradebook.manual(sub.student, sub.assignment)
        if autograded is not None and manual != NO_MANUAL:  # only the header says it
            header = _header(record.result, record.result.status.value, manual)
            header.id = autograded.cells[0].id
            autograded.cells[0] = header
        try:
            if autograded is not None:
                auto = self.out / "autograded" / sub.student / sub.assignment
                write_notebook(auto / f"{sub.assignment}.ipynb", autograded)
                _set_timestamp(auto, when)
        except Exception as exc:
            print(f"could not write the autograded notebook of {sub.student}/{sub.assignment}: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return autograded, manual

    @staticmethod
    def _copy(folder, path, target, aid, when):
        target.mkdir(parents=True, exist_ok=True)
        if folder is not None and Path(folder).resolve() == target.resolve():
            return  # OUT is the course root that was graded
        nb = target / f"{aid}.ipynb"
        if path is not None and path.is_file() and not path.is_symlink() \
                and path.stat().st_size <= 20 * 2**20:
            shutil.copyfile(path, nb)
        elif nb.exists():
            nb.unlink()
        _set_timestamp(target, when)

    def close(self):
        self.gradebook.close()


def _set_timestamp(folder, when):
    p = folder / TIMESTAMP
    if when:
        p.write_text(when[0] + "\n", encoding="utf-8")
    elif p.exists():
        p.unlink()
