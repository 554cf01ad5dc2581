"""Command line of the course's grader (see the README and ``--help``)."""
import argparse
import os
import sys
from pathlib import Path


def grade(p, args):
    """grade SUBMITTED --out OUT: grade a class, record it, render every view."""
    from . import secret
    from .classroom import grade_class
    from .cluster import ClusterError  # imports no Dask
    from .course import StaleNotebook
    from .fence import FenceMissing
    from .jobs import wall_limit
    if not Path(args.submitted).is_dir():
        p.error(f"no such folder: {args.submitted}")
    if args.jobs < 1 or args.timeout <= 0 or args.memory < 256:
        p.error("--jobs >= 1, --timeout > 0 and --memory >= 256 please")
    limits = _limits_of(args)
    executor = None
    if args.cluster:
        from .cluster import DaskCluster
        executor = DaskCluster(args.cluster, limit=wall_limit(limits))
    try:
        rows = grade_class(args.submitted, args.out, jobs=args.jobs, limits=limits,
                           seed=args.seed, db_url=args.db, progress=not args.quiet,
                           only=args.only, resume=args.resume, executor=executor,
                           require_fence=[n for n in args.require_fence.split(",") if n],
                           key_file=args.key_file)
    except (StaleNotebook, ClusterError, FenceMissing, secret.BadKey) as exc:
        print(f"cannot grade: {exc}", file=sys.stderr)
        return 2
    _summary(args.out, rows)
    if args.similarity:
        return main(["similarity", args.submitted, "--out", args.out, "--jobs", str(args.jobs)])
    return 0


def similarity(p, args):
    """similarity SUBMITTED --out OUT: how similar the code the students wrote is."""
    from . import course, similarity as sim
    from .nbgrader_course import submitted_folder
    if not Path(args.submitted).is_dir():
        p.error(f"no such folder: {args.submitted}")
    for folder in args.against:
        if not Path(folder).is_dir():
            p.error(f"no such folder: {folder}")
    students = submitted_folder(args.submitted).resolve()
    if any(submitted_folder(folder).resolve() == students for folder in args.against):
        p.error("--against names this class's own submissions")
    if students in [Path(args.out).resolve(), *Path(args.out).resolve().parents]:
        p.error(f"--out {args.out} is among the students' folders: the report is the "
                "instructor's, put it elsewhere")
    unknown = sorted(set(args.assignment or []) - set(course.assignments()))
    if unknown:
        p.error(f"not an assignment of this course: {', '.join(unknown)}")
    threshold = sim.THRESHOLD if args.threshold is None else args.threshold
    if not 0.0 < threshold <= 1.0 or args.jobs < 1:
        p.error("--threshold between 0 (excluded) and 1, and --jobs >= 1 please")
    try:
        reports = sim.run(args.submitted, args.out, args.assignment, args.against,
                          threshold=threshold, jobs=args.jobs)
    except OSError as exc:
        print(f"cannot write the similarity report: {exc}", file=sys.stderr)
        return 2
    for r in reports:
        print(f"{r.assignment}: {r.compared} notebook(s) compared, {len(r.flagged)} similar "
              f"pair(s) and {len(r.reference_flagged)} similar to the reference "
              f"(score >= {threshold:g})")
    print(f"for the instructor only: {Path(args.out) / sim.HTML_NAME} and {sim.CSV_NAME}")
    return 0


def _summary(out, rows):
    total = sum(r.score for r in rows)
    print(f"{out} holds {len(rows)} submissions (mean score {total / max(1, len(rows)):.2f}); "
          f"return {Path(out) / 'return'}/<student>/ to each student; what the class got "
          f"wrong: {Path(out) / 'class-report.html'}")


def render(p, args):
    """render OUT: every view again from the records and the gradebook."""
    from .render import render_all
    from .store import RECORDS
    if not (Path(args.out) / RECORDS).is_dir():
        p.error(f"{args.out} holds no records: grade into it first")
    _summary(args.out, render_all(args.out, args.db))
    return 0


def gradescope(p, args):
    """gradescope ZIP --assignment ID: build a Gradescope autograder."""
    from . import gradescope as gs
    try:
        members = gs.build(args.zip, args.assignment, args.seed, _limits_of(args))
    except ValueError as exc:
        p.error(str(exc))
    print(f"wrote {args.zip} ({len(members)} files): upload it as the autograder of "
          f"the Gradescope assignment for {args.assignment}")
    return 0


def notebooks(p, args):
    """notebooks [--check]: regenerate exercises/ from source/."""
    from . import notebooks as nb
    stale = nb.build(args.assignments or None, check_only=args.check)
    print(f"{'stale' if args.check else 'regenerated'}: {', '.join(stale) if stale else 'none'}")
    return 1 if (args.check and stale) else 0


def demo(p, args):
    """demo [--check]: regenerate the demo class."""
    from . import demo as d
    stale = d.build(check_only=args.check)
    print(("stale: " if args.check else "regenerated: ") + (", ".join(stale) or "none"))
    return 1 if (args.check and stale) else 0


def _limits(parser):
    from .model import Limits
    parser.add_argument("--seed", type=int, default=0, help="grading seed for the hidden inputs")
    parser.add_argument("--timeout", type=float, default=Limits.cell_timeout,
                        help="seconds of the student's code per cell (default %(default)g)")
    parser.add_argument("--notebook-timeout", type=float, default=Limits.notebook_timeout,
                        help="seconds per notebook (default %(default)g)")
    parser.add_argument("--memory", type=int, default=Limits.memory_mb,
                        help="MB of memory per notebook (default %(default)d)")


def _limits_of(args):
    from .model import Limits
    return Limits(cell_timeout=args.timeout, notebook_timeout=args.notebook_timeout,
                  memory_mb=args.memory)


def parser():
    p = argparse.ArgumentParser(prog="python -m autograder")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("grade", help="grade a class of submissions")
    g.set_defaults(run=grade)
    g.add_argument("submitted", help="folder SUBMITTED/<student_id>/<assignment>/<assignment>.ipynb, "
                                     "or an nbgrader course root holding submitted/")
    g.add_argument("--out", required=True,
                   help="where the records, grades.csv, the students' folders (return/), the "
                        "class report and the nbgrader course files go")
    g.add_argument("--jobs", type=int, default=os.cpu_count(), help="parallel submissions (default: cores)")
    g.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="grade on a Dask cluster: a scheduler address (tcp://host:8786) or "
                        "local:N (N worker processes here); needs dask and distributed")
    _limits(g)
    g.add_argument("--key-file", default=None, metavar="PATH",
                   help="the course key the hidden inputs are drawn with, kept secret "
                        "(default OUT/.grading-key, made on first use)")
    g.add_argument("--db", default=None, help="gradebook URL (default: sqlite OUT/gradebook.db)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--only", nargs="+", metavar="STUDENT",
                   help="grade these students only; everyone else's grades in OUT stay")
    g.add_argument("--require-fence", default="", metavar="LAYER[,LAYER]",
                   help="refuse to grade unless these fence layers are in force (names: "
                        "namespace, uid, tmpfs, ipc, landlock, scoped, seccomp, cgroup; or all)")
    g.add_argument("--resume", action="store_true",
                   help="skip submissions OUT already holds, graded from the same notebook, "
                        "seed, limits and course")
    g.add_argument("--similarity", action="store_true",
                   help="then write OUT/similarity.csv and OUT/similarity.html (as the "
                        "similarity command)")

    s = sub.add_parser("similarity", help="how similar the code the students wrote is "
                                          "(for the instructor)")
    s.set_defaults(run=similarity)
    s.add_argument("submitted", help="folder SUBMITTED/<student_id>/<assignment>/<assignment>.ipynb, "
                                     "or an nbgrader course root holding submitted/")
    s.add_argument("--out", required=True,
                   help="where similarity.csv and similarity.html go (not a student's folder)")
    s.add_argument("--against", action="append", default=[], metavar="DIR",
                   help="an earlier term's submissions (same layout) to compare this class "
                        "with; may be repeated")
    s.add_argument("--assignment", action="append", metavar="ID",
                   help="compare this assignment only (may be repeated; default: all)")
    s.add_argument("--threshold", type=float, default=None,
                   help="flag and show side by side the pairs from this score on (default 0.5)")
    s.add_argument("--jobs", type=int, default=os.cpu_count(),
                   help="processes reading the notebooks (default: cores)")

    r = sub.add_parser("render", help="render every file of OUT again from its records and "
                                      "the gradebook (after manual grading, say)")
    r.set_defaults(run=render)
    r.add_argument("out", help="a folder that `grade` wrote")
    r.add_argument("--db", default=None, help="gradebook URL (default: sqlite OUT/gradebook.db)")

    n = sub.add_parser("notebooks", help="regenerate exercises/ from source/ with nbgrader")
    n.set_defaults(run=notebooks)
    n.add_argument("--check", action="store_true", help="only report stale notebooks (exit 1)")
    n.add_argument("assignments", nargs="*")

    d = sub.add_parser("demo", help="regenerate the demo class in demo/submitted")
    d.set_defaults(run=demo)
    d.add_argument("--check", action="store_true", help="only report a stale demo class (exit 1)")

    z = sub.add_parser("gradescope", help="build a Gradescope autograder zip")
    z.set_defaults(run=gradescope)
    z.add_argument("zip", help="where to write the zip (e.g. autograder.zip)")
    z.add_argument("--assignment", required=True, metavar="ID",
                   help="the assignment this autograder grades (an upload of another gets 0)")
    _limits(z)
    return p


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    return args.run(p, args)


if __name__ == "__main__":
    sys.exit(main())
