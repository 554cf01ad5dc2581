"""Command line of the course's grader (see the README)."""
import argparse
import os
import sys
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m autograder")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("grade", help="grade a class of submissions")
    g.add_argument("submitted", help="folder SUBMITTED/<student_id>/<assignment>/<assignment>.ipynb, "
                                     "or an nbgrader course root holding submitted/")
    g.add_argument("--out", required=True,
                   help="where grades.csv, the feedback, the class report and the nbgrader "
                        "course files (gradebook, autograded notebooks) go")
    g.add_argument("--jobs", type=int, default=os.cpu_count(), help="parallel submissions (default: cores)")
    g.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="grade on a Dask cluster: a scheduler address (tcp://host:8786) or "
                        "local:N (N worker processes here); needs dask and distributed")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds per cell (default 30)")
    g.add_argument("--notebook-timeout", type=float, default=300.0, help="seconds per notebook")
    g.add_argument("--memory", type=int, default=2048, help="MB of memory per notebook")
    g.add_argument("--seed", type=int, default=0, help="grading seed for the hidden inputs")
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

    n = sub.add_parser("notebooks", help="regenerate exercises/ from source/ with nbgrader")
    n.add_argument("--check", action="store_true", help="only report stale notebooks (exit 1)")
    n.add_argument("assignments", nargs="*")

    d = sub.add_parser("demo", help="regenerate the demo class in demo/submitted")
    d.add_argument("--check", action="store_true", help="only report a stale demo class (exit 1)")

    z = sub.add_parser("gradescope", help="build a Gradescope autograder zip")
    z.add_argument("zip", help="where to write the zip (e.g. autograder.zip)")
    z.add_argument("--assignment", required=True, metavar="ID",
                   help="the assignment this autograder grades (an upload of another gets 0)")
    z.add_argument("--seed", type=int, default=0, help="grading seed for the hidden inputs")
    z.add_argument("--timeout", type=float, default=30.0, help="seconds per cell (default 30)")
    z.add_argument("--notebook-timeout", type=float, default=300.0, help="seconds per notebook")
    z.add_argument("--memory", type=int, default=2048, help="MB of memory per notebook")

    args = p.parse_args(argv)
    if args.command == "grade":
        from .classroom import grade_class
        from .sandbox import Limits
        if not Path(args.submitted).is_dir():
            p.error(f"no such folder: {args.submitted}")
        if args.jobs < 1 or args.timeout <= 0 or args.memory < 256:
            p.error("--jobs >= 1, --timeout > 0 and --memory >= 256 please")
        from . import secret
        from .course import StaleNotebook
        limits = Limits(cell_timeout=args.timeout, notebook_timeout=args.notebook_timeout,
                        memory_mb=args.memory)
        try:
            rows = grade_class(args.submitted, args.out, jobs=args.jobs, limits=limits,
                               seed=args.seed, db_url=args.db, progress=not args.quiet,
                               only=args.only, resume=args.resume, cluster=args.cluster,
                               require_fence=[n for n in args.require_fence.split(",") if n],
                               key_file=args.key_file)
        except (StaleNotebook, secret.BadKey) as exc:
            print(f"cannot grade: {exc}", file=sys.stderr)
            return 2
        except RuntimeError as exc:
            from .cluster import ClusterError  # imports no Dask
            from .fence import FenceMissing
            if not isinstance(exc, (ClusterError, FenceMissing)):
                raise
            print(f"cannot grade: {exc}", file=sys.stderr)
            return 2
        total = sum(r["score"] for r in rows)
        print(f"{args.out} holds {len(rows)} submissions "
              f"(mean score {total / max(1, len(rows)):.2f}); what the class got wrong: "
              f"{Path(args.out) / 'class-report.html'}")
        return 0
    if args.command == "gradescope":
        from . import gradescope
        try:
            members = gradescope.build(args.zip, args.assignment, args.seed, args.timeout,
                                       args.notebook_timeout, args.memory)
        except ValueError as exc:
            p.error(str(exc))
        print(f"wrote {args.zip} ({len(members)} files): upload it as the autograder of "
              f"the Gradescope assignment for {args.assignment}")
        return 0
    if args.command == "notebooks":
        from . import notebooks
        stale = notebooks.build(args.assignments or None, check_only=args.check)
        verb = "stale" if args.check else "regenerated"
        print(f"{verb}: {', '.join(stale) if stale else 'none'}")
        return 1 if (args.check and stale) else 0
    if args.command == "demo":
        from . import demo
        stale = demo.build(check_only=args.check)
        print(("stale: " if args.check else "regenerated: ") + (", ".join(stale) or "none"))
        return 1 if (args.check and stale) else 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
