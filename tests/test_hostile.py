"""Hostile and broken submissions: every one scored, explained, contained.

The corpus (tests/hostile) is graded in ONE class through the real command
line, beside two honest students whose results must equal their grading
alone, in a copy of the course whose instructor files must be unchanged
afterwards.  The sandbox's mechanisms are also tested one by one, as are
the class-level faults (a dead pool process, a grading that never ends),
the secrecy of hidden inputs, determinism, and the Gradescope package.
"""
import csv
import hashlib
import html
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import checks, classroom, course, grade, jobs, model, report, store
from autograder.pool import LocalPool
from autograder.sandbox import Limits, Sandbox, StudentCrash, StudentError
from tests.conftest import ROOT, filled, records, release, returned, secret_names
from tests.hostile import AID, CASES, TABLE_KEY, Context

CORPUS_TIMEOUT = 3  # --timeout of the corpus run: runaway cells cost this much
CORPUS_SEED = 424242  # distinctive: no learner-visible file of the corpus may contain it


def row_id(case):
    """The student id a case is graded under (its folder name, or the safe id)."""
    if case.folder is None:
        return case.name
    return classroom.student_id(os.fsdecode(case.folder))[0]


def tree_digest(root, folders=("solutions", "source", "exercises", "autograder")):
    """sha256 of every file (path and bytes) under the instructor's folders."""
    h = hashlib.sha256()
    for folder in folders:
        for p in sorted((Path(root) / folder).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def copy_course(dest):
    """A private copy of the course: the corpus attacks it, not the shared checkout."""
    dest.mkdir(parents=True)
    for d in ("autograder", "solutions", "source", "exercises"):
        shutil.copytree(ROOT / d, dest / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest)
    return dest


def run_cli(root, *args, timeout=900, env=None):
    return subprocess.run([sys.executable, "-m", "autograder", *map(str, args)],
                          capture_output=True, text=True, cwd=root, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def fence():
    with Sandbox(Limits()) as sb:
        return dict(sb.info)


# ----------------------------------------------------------------------------
# The corpus, in one class, through the command line


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    info = fence()
    own_uid = info["isolation"].endswith("uid")
    if not info["scoped"] and not own_uid:
        pytest.fail(f"this machine cannot stop a student from signalling the grader ({info}); "
                    "refusing to run the corpus (it sends SIGKILL to every process it may)")
    if os.geteuid() == 0 and not own_uid:
        pytest.fail(f"as root without a uid of its own a sandbox has no process limit ({info}); "
                    "refusing to run the corpus's fork bomb")
    base = tmp_path_factory.mktemp("hostile")
    root = copy_course(base / "course")
    sub, out = base / "submitted", base / "out"
    ctx = Context(release(AID), filled(AID), root, out, ROOT)
    for case in CASES:
        folder = sub / os.fsdecode(case.folder if case.folder is not None else case.name) / AID
        folder.mkdir(parents=True)
        if case.layout:
            case.build(ctx, folder)
        else:
            (folder / f"{AID}.ipynb").write_bytes(case.build(ctx))
    before = tree_digest(root)
    shm_before = sysv_objects()
    tmp = base / "tmp"
    tmp.mkdir()
    t = time.monotonic()
    proc = run_cli(root, "grade", sub, "--out", out, "--jobs", 2, "--timeout", CORPUS_TIMEOUT,
                   "--seed", CORPUS_SEED, "--quiet", env={"TMPDIR": str(tmp)})
    seconds = time.monotonic() - t
    print(f"corpus of {len(CASES)} submissions graded in {seconds:.1f} s")
    rows = {r["student_id"]: r for r in csv.DictReader(open(out / "grades.csv", encoding="utf-8"))} \
        if (out / "grades.csv").exists() else {}
    return {"proc": proc, "out": out, "root": root, "rows": rows, "tmp": tmp,
            "records": records(out) if (out / store.RECORDS).is_dir() else {},
            "before": before, "after": tree_digest(root),
            "shm_before": shm_before, "shm_after": sysv_objects()}


def sysv_objects():
    """The System V shared memory segments, semaphores and queues of the machine."""
    found = set()
    for kind in ("shm", "sem", "msg"):
        try:
            found |= {(kind, line.split()[1]) for line in
                      Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]}
        except OSError:
            pass
    return found


def test_the_grader_survives_the_corpus(corpus):
    proc = corpus["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(corpus["rows"]) == {row_id(c) for c in CASES}
    assert set(corpus["records"]) == {(row_id(c), AID) for c in CASES}


def test_nothing_is_left_behind(corpus):
    """No scratch folder in the temporary directory, no System V object in the kernel."""
    assert list(corpus["tmp"].iterdir()) == []
    assert corpus["shm_after"] <= corpus["shm_before"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_case_is_scored_and_explained(corpus, case):
    row = corpus["rows"][row_id(case)]
    assert row["status"] == case.status, row
    max_score = course.load(AID).max_score
    assert float(row["max_score"]) == max_score  # nothing in a notebook changes the maximum
    lo, hi = case.score
    assert lo * max_score - 1e-6 <= float(row["score"]) <= hi * max_score + 1e-6, row
    rec = corpus["records"][(row_id(case), AID)]  # the truth the views were made from
    assert rec.result.status.value == row["status"]
    assert rec.result.score == pytest.approx(float(row["score"]), abs=1e-3)
    folder = returned(corpus["out"], row_id(case), AID)
    for name in ("feedback.html", "results.json"):  # what a student wrote cannot make them large
        assert (folder / name).stat().st_size < 2**20, name
    feedback = html.unescape((folder / "feedback.html").read_text()).lower()
    for alternatives in case.says:
        assert any(a in feedback for a in alternatives), (alternatives, feedback[-3000:])
    if case.clean:
        assert "what happened while running" not in feedback, feedback[-3000:]
        assert "errors in your cells" not in feedback, feedback[-3000:]
    results = json.loads((folder / "results.json").read_text())
    assert results["score"] == pytest.approx(float(row["score"]), abs=1e-3)


def test_honest_students_are_unaffected(corpus):
    """Their results equal a grading of the same notebook on its own."""
    from autograder import secret
    key = secret.load_or_create(corpus["out"] / secret.KEY_FILE)  # the run's course key
    alone = report.gradescope_results(grade.grade_notebook(
        course.load(AID), filled(AID), Limits(cell_timeout=CORPUS_TIMEOUT), seed=CORPUS_SEED,
        key=key))
    for name in ("honest", "zz_honest"):
        got = json.loads((returned(corpus["out"], name, AID) / "results.json").read_text())
        assert got == json.loads(json.dumps(alone)), name
        assert float(corpus["rows"][name]["score"]) == course.load(AID).max_score


def test_instructor_files_are_unchanged(corpus):
    assert corpus["before"] == corpus["after"]
    assert not (corpus["root"] / "solutions" / "evil.py").exists()
    assert not (ROOT / "solutions" / "evil.py").exists()


def test_gradebook_holds_exactly_the_grades(corpus):
    """Attempts to write the gradebook or grades.csv changed nothing there."""
    from nbgrader.api import Gradebook
    rows = corpus["rows"]
    with Gradebook(f"sqlite:///{corpus['out'] / 'gradebook.db'}") as gb:
        assert {s.id for s in gb.students} == set(rows)
        for name, r in rows.items():
            sub = gb.find_submission(AID, name)
            assert sub.score == pytest.approx(float(r["score"]), abs=1e-3), name
            assert name[:1] not in "=+-@" and name == name.encode("utf-8").decode("utf-8")


def test_the_grading_seed_never_reaches_a_learner(corpus):
    """Nothing a sandbox can read holds the grading seed (the show_settings case
    put its command line and environment into its feedback)."""
    shown = (returned(corpus["out"], "show_settings", AID) / "feedback.html").read_text()
    assert "PYTHONHASHSEED" in html.unescape(shown)  # the case did show what it could read
    for path in learner_files(corpus["out"]):
        text = path.read_text(encoding="utf-8")
        assert str(CORPUS_SEED) not in text.replace(f'"seed": {CORPUS_SEED}', ""), path


def notebook_text(path):
    """The sources and output texts of a notebook, as a reader sees them."""
    nb = nbformat.read(path, as_version=4)
    parts = []
    for c in nb.cells:
        parts.append(c.source)
        for o in c.get("outputs", []):
            parts += [o.get("text", ""), o.get("evalue", ""), *o.get("traceback", []),
                      o.get("data", {}).get("text/plain", "")]
    return "\n".join(parts)


def learner_files(out):
    """What learners may read, or their instructor show them: the students'
    folders (results, feedback, autograded notebook), the autograded notebooks
    of the course root (nbgrader's feedback is made from those), and the
    class report."""
    return (sorted(out.glob(f"return/*/{AID}/*")) + sorted(out.glob(f"autograded/*/{AID}/*.ipynb"))
            + [out / "class-report.html"])


def readable_text(path):
    """What a reader of ``path`` sees: a notebook's sources and outputs, the
    texts of results.json, a page's text."""
    if path.suffix == ".ipynb":
        return notebook_text(path)
    if path.suffix == ".json":
        r = json.loads(path.read_text(encoding="utf-8"))
        return "\n".join([r["output"]] + [t["name"] + "\n" + t["output"] for t in r["tests"]])
    return html.unescape(path.read_text(encoding="utf-8"))


def test_feedback_never_shows_hidden_checks(corpus):
    """Hidden checks are only in the records: no learner file names one
    (results.json holds one count per test cell) or shows its message."""
    out = corpus["out"]
    secret = secret_names(out)
    messages = {True: set(), False: set()}
    for rec in corpus["records"].values():
        for c in rec.result.checks:
            messages[c.hidden].add(c.outcome.message)
    secret_messages = {m for m in messages[True] - messages[False] if len(m) > 20}
    files = learner_files(out)
    assert len([p for p in files if p.parts[-4] == "return" and p.suffix == ".ipynb"]) == \
        len(CASES)
    assert len([p for p in files if p.parts[-4] == "autograded"]) == len(CASES)
    assert len([p for p in files if p.name == "results.json"]) == len(CASES)
    for path in files:
        text = readable_text(path)
        for name in secret:
            assert name not in text, (path, name)
        assert not [m for m in secret_messages if m in text], path
        assert "grading_rng" not in text and "BEGIN HIDDEN" not in text


# ----------------------------------------------------------------------------
# The sandbox's mechanisms, one by one


@pytest.fixture
def sb():
    with Sandbox(Limits(cell_timeout=5, memory_mb=1024)) as s:
        yield s


@pytest.mark.parametrize("isolation", ["auto", "basic"])
def test_cannot_signal_the_grader(isolation):
    """With the uid switch and, even without it, with Landlock's signal scope."""
    with Sandbox(Limits(cell_timeout=5, isolation=isolation)) as s:
        if isolation == "basic" and not s.info["scoped"]:
            pytest.fail("Landlock ABI >= 6 (signal scoping) is needed on this kernel")
        with pytest.raises(StudentError, match="PermissionError|Operation not permitted"):
            s.exec("import os\nos.kill(os.getppid(), 0)", "<cell>")


def test_a_sandbox_left_as_root_has_no_capabilities():
    if os.geteuid() != 0:
        pytest.skip("only a grader running as root can leave a sandbox root")
    with Sandbox(Limits(cell_timeout=5, isolation="basic")) as s:
        s.exec("import os\nassert os.geteuid() == 0", "<cell>")
        # Harmless if it worked (it would only change the sandbox's own uid).
        with pytest.raises(StudentError, match="PermissionError"):
            s.exec("import os\nos.setuid(12345)", "<cell>")


def test_process_and_thread_counts_are_bounded(sb):
    with pytest.raises((StudentError, StudentCrash)):
        sb.exec("import os\nkids = []\nfor _ in range(500):\n    pid = os.fork()\n"
                "    if pid == 0:\n        import time\n        time.sleep(60)\n"
                "    kids.append(pid)\n", "<cell>")
    assert any("processes or threads" in e for e in sb.events)
    with pytest.raises(StudentError, match="can't start new thread"):
        sb.exec("import threading, time\nfor _ in range(500):\n"
                "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n",
                "<cell>")


def test_disk_is_bounded_with_a_tmpfs(sb):
    if not sb.info["tmpfs"]:
        pytest.skip("no private tmpfs here (the watcher is tested below)")
    with pytest.raises(StudentError, match="No space left"):
        sb.exec("i = 0\nwhile True:\n    open(f'f{i}', 'w').close()\n    i += 1\n", "<cell>")
    assert any("working folder" in e for e in sb.events)
    assert os.listdir(sb.scratch) == []  # the grader's disk never saw them


def test_disk_is_bounded_by_the_watcher_in_basic_mode():
    with Sandbox(Limits(cell_timeout=20, isolation="basic", max_files=300)) as s:
        with pytest.raises(StudentCrash):
            s.exec("import time\ni = 0\nwhile True:\n    open(f'f{i}', 'w').close()\n"
                   "    i += 1\n    time.sleep(0.001)\n", "<cell>")
        assert any("working folder" in e for e in s.events)


def test_no_network_and_no_proc(sb):
    with pytest.raises(StudentError, match="unreachable|Permission denied|not permitted"):
        sb.exec("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "s.sendto(b'x', ('127.0.0.1', 9))", "<cell>")
    with pytest.raises(StudentError, match="Permission denied"):
        sb.exec("open('/proc/1/cmdline').read()", "<cell>")


def test_cannot_import_the_course_even_on_its_path(sb):
    with pytest.raises(StudentError, match="ModuleNotFoundError|PermissionError"):
        sb.exec(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport solutions.{AID}", "<cell>")


@pytest.mark.parametrize("attack, says", ids=["close", "garbage", "stall", "huge-header"], argvalues=[
    ("import os\nfor fd in range(3, 64):\n    try:\n        os.close(fd)\n"
     "    except OSError:\n        pass\n", "channel|process stopped"),
    ("import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'garbage' * 9)\n"
     "    except OSError:\n        pass\n", "channel"),
    ("import os, struct, time\nfor fd in range(3, 64):\n    try:\n"
     "        os.write(fd, struct.pack('<Q', 50) + b'{')\n    except OSError:\n        pass\n"
     "time.sleep(60)\n", "timed out"),
    ("import os, struct\nfor fd in range(3, 64):\n    try:\n"
     "        os.write(fd, struct.pack('<Q', 2**40))\n    except OSError:\n        pass\n", "channel"),
])
def test_channel_attacks_end_in_a_crash_not_a_hang(attack, says):
    with Sandbox(Limits(cell_timeout=2)) as s:
        with pytest.raises(StudentCrash, match=says):
            s.exec(attack, "<cell>")
        assert not s.alive


def test_a_forked_child_never_answers_for_the_worker(sb):
    sb.exec("import os\nchild = os.fork()\ndef f(x):\n    return x + 1\n", "<cell>")
    for i in range(20):
        assert sb.call("f", [i], {})[0] == i + 1


def test_values_that_cannot_cross_are_errors_of_the_student(sb):
    sb.exec("import numpy as np\n"
            "class Evil:\n    def __array__(self, *a, **k):\n        raise RuntimeError\n"
            "    def __eq__(self, o):\n        return True\n"
            "def evil():\n    return Evil()\n"
            "def huge():\n    return np.zeros((5000, 5000))\n"
            "def deep():\n    x = []\n    for _ in range(10**4):\n        x = [x]\n    return x\n"
            "def objects():\n    return np.array([1, 'a'], dtype=object)\n"
            "def big_int():\n    return 10**100\n", "<cell>")
    got = sb.call("evil", [], {})[0]
    assert type(got).__name__ == "Evil" and not np.asarray(got, dtype=object).shape
    with pytest.raises(StudentError, match="too large"):
        sb.call("huge", [], {})
    with pytest.raises(StudentError, match="nested"):
        sb.call("deep", [], {})
    with pytest.raises(StudentError, match="dtype"):
        sb.call("objects", [], {})
    assert sb.call("big_int", [], {})[0] == 10**100  # exact integers cross (grid_cell_count)


def test_handles_of_a_dead_process_are_refused():
    with Sandbox(Limits(cell_timeout=5)) as a, Sandbox(Limits(cell_timeout=5)) as b:
        for s in (a, b):
            s.exec("class Box:\n    pass\ndef make():\n    return Box()\n"
                   "def take(x):\n    return type(x).__name__\n", "<cell>")
        box = a.call("make", [], {})[0]
        assert a.call("take", [box], {})[0] == "Box"
        with pytest.raises(StudentError, match="earlier run"):
            b.call("take", [box], {})


def test_malicious_array_headers_are_refused():
    from autograder import wire
    for bad in ({"__nd__": "", "dtype": "<f8", "shape": [10**12], "id": 0},
                {"__nd__": "AAAAAAAAAAA=", "dtype": "O", "shape": [1], "id": 0},
                {"__nd__": "AAAAAAAAAAA=", "dtype": "V8", "shape": [1], "id": 0},
                {"__nd__": "AAAAAAAAAAA=", "dtype": "f8,i4", "shape": [1], "id": 0}):
        with pytest.raises((TypeError, ValueError)):
            wire.Decoder()(bad)


# ----------------------------------------------------------------------------
# Hidden inputs never reach what the learner reads

LEAK = '''
import numpy as _np
_seen = []
def _spy(fn):
    def wrapper(*args, **kwargs):
        for a in args:
            if isinstance(a, _np.ndarray) and a.dtype.kind == "f":
                _seen.extend(float(v) for v in a.ravel()[:6])
        if fn.__name__ == "softmax" and len(_seen) > 0:
            raise ValueError("LEAK " + " ".join(repr(v) for v in _seen[-150:]))
        return fn(*args, **kwargs)
    wrapper.__name__ = fn.__name__
    return wrapper
for _name in ["sigmoid", "relu", "sigmoid_grad", "tanh_grad", "relu_grad",
              "dense_forward", "dense_backward", "softmax"]:
    globals()[_name] = _spy(globals()[_name])
'''


def _inputs_seen(monkeypatch, nb, seed):
    """Float values passed to the student's functions, by visible/hidden check."""
    seen = {True: set(), False: set()}
    original = Sandbox.call

    def spy(self, name, args, kwargs, **kw):
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                seen[bool(checks._hidden)].update(repr(float(v)) for v in a.ravel())
        return original(self, name, args, kwargs, **kw)

    monkeypatch.setattr(Sandbox, "call", spy)
    grade.grade_notebook(course.load(AID), nb, seed=seed)
    monkeypatch.undo()
    return seen


def _learner_text(result):
    r = report.gradescope_results(result)
    return (html.unescape(report.feedback_html("s", AID, result)) + r["output"]
            + json.dumps(r["tests"]))


def test_hidden_inputs_cannot_be_smuggled_into_feedback(monkeypatch):
    seen = _inputs_seen(monkeypatch, filled(AID), seed=0)
    # Values only hidden checks pass, with enough digits not to occur by chance.
    secret = {v for v in seen[True] - seen[False] if len(v.lstrip("-")) >= 12}
    assert len(secret) > 20
    nb = filled(AID)
    nb.cells.append(nbformat.v4.new_code_cell(LEAK))
    result = grade.grade_notebook(course.load(AID), nb, seed=0)
    text = _learner_text(result)
    assert "LEAK" in text  # the smuggling channel works for what it may see ...
    assert not [v for v in secret if v in text]  # ... and carries no hidden input


def test_the_hidden_process_starts_after_the_visible_one_is_gone(monkeypatch):
    """The order that makes the leak above impossible, even through kernel
    objects two live processes could share: every hidden input is sent to a
    process started after the visible process died."""
    log, live = [], {}
    start, close, call = Sandbox.start, Sandbox.close, Sandbox.call

    def logged_start(self):
        out = start(self)
        live[self.token] = self
        log.append(("start", self.token))
        return out

    def logged_close(self):
        if self.proc is not None:
            log.append(("close", self.token))
        return close(self)

    def logged_call(self, *args, **kwargs):
        log.append(("hidden call" if checks._hidden else "visible call", self.token,
                    tuple(t for t, sb in live.items() if sb.alive and t != self.token)))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(Sandbox, "start", logged_start)
    monkeypatch.setattr(Sandbox, "close", logged_close)
    monkeypatch.setattr(Sandbox, "call", logged_call)
    grade.grade_notebook(course.load(AID), filled(AID), seed=0)
    monkeypatch.undo()
    hidden = [e for e in log if e[0] == "hidden call"]
    visible = [e for e in log if e[0] == "visible call"]
    assert hidden and visible
    assert all(others == () for _, _, others in hidden), "another sandbox was alive"
    assert {t for _, t, _ in hidden}.isdisjoint({t for _, t, _ in visible})
    assert log.index(hidden[0]) > log.index(visible[-1])


# ----------------------------------------------------------------------------
# Determinism


RANDOM_STUDENT = '''
import random
import numpy as np
def _coin(fn):
    # right or wrong at random: only a seeded grader grades it the same twice
    def f(z):
        u = np.random.default_rng().random() + random.random() + np.random.rand()
        return fn(z) if u % 1 < 0.5 else -fn(z)
    return f
def _coin2(fn):
    # the same with a generator seeded from fresh entropy, as the issue found
    def f(z):
        u = np.random.Generator(np.random.PCG64()).random()
        return fn(z) if u < 0.5 else -fn(z)
    return f
sigmoid, relu, softmax, tanh_grad = _coin(sigmoid), _coin(relu), _coin(softmax), _coin(tanh_grad)
sigmoid_grad, relu_grad = _coin2(sigmoid_grad), _coin2(relu_grad)
'''


def test_same_seed_same_grades_twice(tmp_path):
    from autograder import demo
    sub = tmp_path / "submitted"
    nbs = {"full": filled(AID), "stub": release(AID),
           "buggy": demo._introduce(filled(AID), demo.BUGS[AID]),
           "random": filled(AID)}
    nbs["random"].cells.append(nbformat.v4.new_code_cell(RANDOM_STUDENT))
    for name, nb in nbs.items():
        (sub / name / AID).mkdir(parents=True)
        nbformat.write(nb, sub / name / AID / f"{AID}.ipynb")
    outs = []
    for run in ("a", "b"):  # two OUTs, one course key
        out = tmp_path / run
        proc = run_cli(ROOT, "grade", sub, "--out", out, "--jobs", 2, "--seed", 5, "--quiet",
                       "--key-file", tmp_path / "course.key")
        assert proc.returncode == 0, proc.stderr
        outs.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                     if p.suffix in (".csv", ".json", ".html", ".ipynb")
                     and p.name != "grading.json"})  # it holds timings
    assert outs[0] == outs[1]
    assert len([p for p in outs[0] if p.startswith("records/")]) == len(nbs)
    rows = list(csv.DictReader(open(tmp_path / "a" / "grades.csv")))
    assert all(r["seed"] == "5" for r in rows)
    by = {r["student_id"]: float(r["score"]) for r in rows}
    assert 0 < by["random"] < by["full"]


KEY = TABLE_KEY  # the corpus's lookup-table key of a call's arguments


def test_a_hard_coded_answer_for_one_seed_fails_for_another(monkeypatch):
    """Record every answer the reference gives at seed 0, submit the table."""
    ns = {}
    exec(KEY, ns)
    table = {}
    original = Sandbox.call

    def record(self, name, args, kwargs, **kw):
        key = ns["_key"]((name, list(args), dict(kwargs)))
        result = original(self, name, args, kwargs, **kw)
        table[key] = result[0]  # what the function returned
        return result

    a = course.load(AID)
    monkeypatch.setattr(Sandbox, "call", record)
    grade.grade_notebook(a, filled(AID), seed=0)
    monkeypatch.undo()
    blob = pickle.dumps(table).hex()
    code = KEY + (f"import pickle\n_table = pickle.loads(bytes.fromhex({blob!r}))\n"
                  "def _answer(name):\n"
                  "    def f(*args, **kwargs):\n"
                  "        return _table.get(_key((name, list(args), dict(kwargs))))\n"
                  "    return f\n"
                  f"for _name in {a.functions!r}:\n"
                  "    globals()[_name] = _answer(_name)\n")
    nb = release(AID)
    nb.cells.append(nbformat.v4.new_code_cell(code))

    def hidden_passed(seed):
        r = grade.grade_notebook(a, nb, seed=seed)
        return sum(c.passed for c in r.checks if c.hidden)

    n_hidden = sum(c.hidden for c in grade.grade_notebook(a, filled(AID), seed=0).checks)
    assert n_hidden
    at_0, at_1 = hidden_passed(0), hidden_passed(1)
    assert at_0 >= 0.75 * n_hidden  # the table answers what seed 0 asks ...
    assert at_1 <= 0.1 * n_hidden   # ... and almost nothing seed 1 asks


# ----------------------------------------------------------------------------
# Faults of the class grading itself


def crashing_grade_one(job):
    """Grades like the grader, but the process grading 'crasher' dies."""
    if job.submission.student == "crasher":
        os._exit(9)
    return jobs.grade_job(job)


def hanging_grade_one(job):
    if job.submission.student == "hanger":
        time.sleep(3600)
    return jobs.grade_job(job)


def _class(tmp_path, names):
    sub = tmp_path / "submitted"
    for name in names:
        (sub / name / AID).mkdir(parents=True)
        nbformat.write(filled(AID), sub / name / AID / f"{AID}.ipynb")
    return sub


def test_a_dead_pool_process_costs_one_row_not_the_class(tmp_path):
    names = ["amy", "bob", "crasher", "dan", "eve"]
    limits = Limits(cell_timeout=5)
    rows = classroom.grade_class(_class(tmp_path, names), tmp_path / "out", limits=limits,
                                 progress=False,
                                 executor=LocalPool(2, limit=jobs.wall_limit(limits),
                                                    grade=crashing_grade_one))
    by = {r.student_id: r for r in rows}
    assert set(by) == set(names)
    assert by["crasher"].status == "crashed" and by["crasher"].score == 0.0
    assert "stopped the grader's own process" in by["crasher"].message
    for n in set(names) - {"crasher"}:
        assert by[n].status == "graded" and by[n].score == course.load(AID).max_score
    assert (returned(tmp_path / "out", "crasher", AID) / "feedback.html").exists()
    crashed = records(tmp_path / "out")[("crasher", AID)].result
    assert crashed.status is model.Status.CRASHED and crashed.notes[-1] == jobs.STOPPED_THE_GRADER


def test_a_grading_that_never_ends_is_abandoned(tmp_path):
    """The limit covers a fresh pool process's start-up (its imports take
    seconds on a loaded machine) and a grading; the hanger sleeps an hour."""
    assert_the_hanger_is_abandoned(LocalPool(2, limit=20.0, grade=hanging_grade_one),
                                   tmp_path, Limits(cell_timeout=5), 20.0)


def assert_the_hanger_is_abandoned(executor, tmp_path, limits, limit):
    """Any executor: of amy, hanger and zoe, graded with ``hanging_grade_one``
    under a wall-clock ``limit``, the hanger gets a crashed result, the
    others their grades, and every result arrives once, in order."""
    names = ["amy", "hanger", "zoe"]
    work = [model.Job(model.Submission(n, AID, str(_class(tmp_path, [n]) / n / AID / f"{AID}.ipynb")),
                      limits, 0) for n in names]
    arrived = []
    results = executor.run(work, on_result=lambda i, g: arrived.append(i))
    assert sorted(arrived) == [0, 1, 2]
    assert [g.submission.student for g in results] == names
    by = {g.submission.student: g.result for g in results}
    assert by["hanger"].status is model.Status.CRASHED
    assert by["hanger"].notes[-1] == jobs.did_not_finish(limit)
    assert by["amy"].status is by["zoe"].status is model.Status.GRADED
    assert by["amy"].score == course.load(AID).max_score


# ----------------------------------------------------------------------------
# Spreadsheets and Gradescope


def test_grades_csv_imports_into_a_spreadsheet(corpus):
    raw = (corpus["out"] / "grades.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM
    text = raw.decode("utf-8")
    rows = list(csv.reader(text.splitlines()))
    header = rows[0]
    assert header[:4] == ["student_id", "assignment", "score", "max_score"]
    assert len(rows) == len(CASES) + 1 and all(len(r) == len(header) for r in rows)
    for r in rows[1:]:
        float(r[2]), float(r[3])
        assert not any(field[:1] in "=+-@" and field for field in r[4:]), r


def test_csv_fields_that_look_like_formulas_are_quoted_as_text():
    assert report._cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert report._cell("line\nbreak") == "line break"
    assert report._cell(3.5) == 3.5


def _run_gradescope(source, root, python=sys.executable, timeout=300):
    """run_autograder of an unpacked zip on ROOT/submission; the results."""
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_SOURCE=str(source),
               AUTOGRADER_PYTHON=str(python))
    run = subprocess.run(["bash", str(Path(source) / "run_autograder")], env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr
    return json.loads((Path(root) / "results" / "results.json").read_text())


def _upload(root, nb, name):
    (root / "submission" / "nested").mkdir(parents=True)
    (root / "results").mkdir()
    if nb is not None:
        nbformat.write(nb, root / "submission" / "nested" / name)
    return root


def test_gradescope_package_grades_a_submission(tmp_path):
    zpath = tmp_path / "autograder.zip"
    proc = run_cli(ROOT, "gradescope", zpath, "--assignment", AID, "--timeout", 5)
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(zpath) as z:
        names = set(z.namelist())
        assert {"setup.sh", "run_autograder", "requirements-grading.txt", "constraints.txt",
                "gradescope.json"} <= names
        assert "requirements.txt" not in names  # the site's and the tests' tools stay out
        for folder in ("autograder/", "solutions/", "source/", "exercises/"):
            assert any(n.startswith(folder) for n in names), folder  # exercises: expected values
        assert not any("__pycache__" in n or n.startswith(("tests/", "book/", "demo/"))
                       for n in names)
        mode = z.getinfo("run_autograder").external_attr >> 16
        assert mode & 0o111
        assert json.loads(z.read("gradescope.json"))["assignment"] == AID
        assert z.getinfo("grading-key").external_attr >> 16 & 0o777 == 0o600  # a course key
        key = bytes.fromhex(z.read("grading-key").decode())
        z.extractall(tmp_path / "source")
    for script in ("setup.sh", "run_autograder"):
        assert subprocess.run(["bash", "-n", str(tmp_path / "source" / script)]).returncode == 0
    setup = (tmp_path / "source" / "setup.sh").read_text()
    assert "python3.11" in setup and "-r requirements-grading.txt" in setup \
        and "constraints.txt" in setup and "requirements.txt " not in setup
    for name, nb in [("full", filled(AID)), ("buggy", _buggy())]:
        alone = grade.grade_notebook(course.load(AID), nb, seed=0, key=key)
        secret = {c.name for c in alone.checks if c.hidden} - \
            {c.name for c in alone.checks if not c.hidden}
        assert secret
        # Gradescope renames nothing; the learner may have: found by its cells.
        r = _run_gradescope(tmp_path / "source", _upload(tmp_path / name, nb, "my upload.ipynb"))
        assert r["score"] == pytest.approx(alone.score, abs=1e-3)
        assert r["max_score"] == course.load(AID).max_score
        if name == "full":
            assert r["score"] == course.load(AID).max_score
        # Hidden checks as one count per test cell, visible to the learner;
        # the checks themselves are not in what Gradescope shows.
        assert {t["visibility"] for t in r["tests"]} == {"visible"}
        assert [t["name"] for t in r["tests"]] == \
            [t["name"] for t in report.gradescope_results(alone)["tests"]]
        assert any(t["name"].endswith(": hidden checks") for t in r["tests"])
        for t in r["tests"]:
            assert set(t) >= {"name", "score", "max_score", "output", "visibility"}
            assert not [s for s in secret if s in t["name"] or s in t["output"]]
        assert r["stdout_visibility"] == "hidden"
    # No notebook at all: a result that says so, not a crash.
    r = _run_gradescope(tmp_path / "source", _upload(tmp_path / "empty", None, ""), timeout=120)
    assert r["score"] == 0 and ".ipynb" in r["output"]


def test_gradescope_gives_an_upload_of_another_assignment_0_and_says_why(tmp_path):
    """The reference solution of another assignment, uploaded under this one's
    name, is told by its cells: 0, and which notebook to upload where."""
    other = next(a for a in course.assignments() if a != AID)
    zpath = tmp_path / "autograder.zip"
    assert run_cli(ROOT, "gradescope", zpath, "--assignment", AID).returncode == 0
    with zipfile.ZipFile(zpath) as z:
        z.extractall(tmp_path / "source")
    r = _run_gradescope(tmp_path / "source",
                        _upload(tmp_path / "wrong", filled(other), f"{AID}.ipynb"))
    assert r["score"] == 0 and r["max_score"] == course.load(AID).max_score
    assert r["tests"] == []
    assert f"the notebook of the assignment {other}" in r["output"]
    assert f"Upload your {AID}.ipynb" in r["output"]
    # Without an assignment there is no zip.
    proc = run_cli(ROOT, "gradescope", tmp_path / "none.zip")
    assert proc.returncode != 0 and "--assignment" in proc.stderr
    assert not (tmp_path / "none.zip").exists()


def test_gradescope_grades_with_the_grading_requirements_alone(tmp_path):
    """A fresh environment from requirements-grading.txt (what setup.sh
    installs) grades an upload exactly as the full one does, without the
    course installed and without the site's, notebooks' or tests' tools."""
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "-r",
                          str(ROOT / "requirements-grading.txt")],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert not installed & {"nbgrader", "jupyter-book", "playwright", "pytest", "jupyterlab",
                            "backprop-course"}, installed
    zpath = tmp_path / "autograder.zip"
    assert run_cli(ROOT, "gradescope", zpath, "--assignment", AID).returncode == 0
    with zipfile.ZipFile(zpath) as z:
        z.extractall(tmp_path / "source")
    nb = _buggy()
    alone = report.gradescope_results(grade.grade_notebook(course.load(AID), nb, seed=0))
    r = _run_gradescope(tmp_path / "source", _upload(tmp_path / "up", nb, "x.ipynb"), python=py)
    assert r["score"] == pytest.approx(alone["score"], abs=1e-9)
    assert [(t["name"], t["score"]) for t in r["tests"]] == \
        [(t["name"], t["score"]) for t in alone["tests"]]


def _buggy():
    from autograder import demo
    return demo._introduce(filled(AID), demo.BUGS[AID][:1])


# ----------------------------------------------------------------------------
# Round two: arguments, the CPU, the channel's limits


@pytest.mark.parametrize("aid", course.assignments())
def test_changing_the_arguments_earns_nothing(aid):
    """Every graded function returns what the reference gives for zeroed
    inputs; with the inputs zeroed and emptied in place as well it earns no
    more (a grader that let the changes reach the values it compares with
    gave this full marks)."""
    from tests.hostile import zero_inputs
    a = course.load(aid)

    def score(mutate):
        nb = filled(aid)
        nb.cells.append(nbformat.v4.new_code_cell(zero_inputs(a.functions, mutate)))
        return grade.grade_notebook(a, nb, seed=0).score

    quiet, wrecking = score(False), score(True)
    assert wrecking <= quiet < a.max_score, (wrecking, quiet)


HOG = '''
import os, time
for _ in range(40):
    if os.fork() == 0:
        os.setsid()
        while True:
            pass
time.sleep(30)
'''


def test_an_honest_student_beside_a_cpu_hog_gets_the_same_result(tmp_path):
    """A classmate's 40 spinning processes (each its own session, past
    autogroup scheduling) change nothing: time limits count the student's
    own time."""
    sub = tmp_path / "submitted"
    for name, extra in (("honest", None), ("hog", HOG)):
        nb = filled(AID)
        if extra:
            nb.cells.insert(len(nb.cells) // 2, nbformat.v4.new_code_cell(extra))
        (sub / name / AID).mkdir(parents=True)
        nbformat.write(nb, sub / name / AID / f"{AID}.ipynb")
    proc = run_cli(ROOT, "grade", sub, "--out", tmp_path / "out", "--jobs", 2,
                   "--timeout", CORPUS_TIMEOUT, "--quiet")
    assert proc.returncode == 0, proc.stderr
    from autograder import secret
    alone = report.gradescope_results(grade.grade_notebook(
        course.load(AID), filled(AID), Limits(cell_timeout=CORPUS_TIMEOUT), seed=0,
        key=secret.load_or_create(tmp_path / "out" / secret.KEY_FILE)))
    got = json.loads((returned(tmp_path / "out", "honest", AID) / "results.json").read_text())
    assert got == json.loads(json.dumps(alone))
    hog = json.loads((returned(tmp_path / "out", "hog", AID) / "results.json").read_text())
    assert "ran for more than" in hog["output"]


def test_a_process_that_stops_reading_cannot_block_the_grader():
    """It answers the current request with a forged reply, then sleeps: the
    grader's next (large) request cannot be written, and waits no longer
    than its deadline."""
    from autograder import sandbox
    with Sandbox(Limits(cell_timeout=60)) as s:
        s.exec("import json, os, struct, sys, time\n"
               "seq = sys._getframe(1).f_locals['msg']['seq']\n"
               "m = json.dumps({'ok': True, 'seq': seq}).encode()\n"
               "os.write(int(sys.argv[2]), struct.pack('<Q', len(m)) + m)\n"
               "time.sleep(600)\n", "<cell>")
        t = time.monotonic()
        with pytest.raises(StudentCrash, match="stopped reading"):
            s.call("f", [np.zeros(2**20)], {})
        assert time.monotonic() - t < sandbox.SEND_SECONDS + 30
        assert any("stopped reading" in e for e in s.events)


def test_decoding_a_frame_costs_a_small_multiple_of_its_size():
    """A frame of empty dicts (millions of objects from a few bytes each) is
    refused before it is parsed."""
    import threading
    import tracemalloc
    from autograder import wire
    frame = b"[" + b"{}," * (10 * 2**20 // 3) + b"{}]"
    r, w = os.pipe()
    writer = threading.Thread(target=wire.send, args=(w, None, wire.struct.pack("<Q", len(frame))
                                                      + frame))
    tracemalloc.start()
    writer.start()
    with pytest.raises(ValueError, match="values"):
        wire.recv(r, deadline=time.monotonic() + 60, max_items=wire.MAX_ITEMS)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    writer.join()
    os.close(r)
    os.close(w)
    assert peak < 3 * len(frame), peak


def test_nbgrader_export_of_the_gradebook_holds_no_formula(corpus, tmp_path):
    """Student ids that look like formulas were replaced when found, so the
    CSV that nbgrader itself writes from the gradebook is safe too."""
    out = tmp_path / "export.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", "export", f"--to={out}",
         f"--CourseDirectory.db_url=sqlite:///{corpus['out'] / 'gradebook.db'}",
         f"--CourseDirectory.root={tmp_path}"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.reader(out.read_text(encoding="utf-8").splitlines()))
    assert len(rows) > len(CASES) // 2
    assert not [f for r in rows for f in r if f[:1] in ("=", "+", "@") or f.startswith("-") and
                not f[1:2].isdigit()]


# ----------------------------------------------------------------------------
# The course key (round three): hidden inputs cannot be predicted or read back


def test_the_grading_seed_cannot_be_read_back_through_a_pass_count():
    """The attack of the corpus case seed_read_back, at several seeds: without
    a key it spells seed % 5 in the hidden pass count of test_activations (the
    attack is real); with a course key it recovers nothing at any seed."""
    from tests.hostile import SEED_SIGNAL
    a = course.load(AID)
    nb = filled(AID)
    nb.cells.append(nbformat.v4.new_code_cell(SEED_SIGNAL.format()))

    def passed(seed, key):
        r = grade.grade_notebook(a, nb, seed=seed, key=key)
        return sum(c.passed for c in r.checks if c.cell == "test_activations" and c.hidden)

    assert passed(3, None) == 5 - 3
    key = os.urandom(32)
    assert [passed(s, key) for s in (1, 3, 424242)] == [5, 5, 5]


def test_the_key_file_is_private_and_the_same_key_draws_the_same_inputs(tmp_path):
    from autograder import secret
    path = tmp_path / "k"
    key = secret.load_or_create(path)
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert secret.load_or_create(path) == key
    other = secret.load_or_create(tmp_path / "k2")
    assert other != key
    e = secret.hidden_entropy
    assert e(key, 5, "c") == e(key, 5, "c") != e(other, 5, "c")
    assert e(key, 5, "c") != e(key, 6, "c") and e(key, 5, "c") != e(key, 5, "d")
    assert secret.sandbox_seed(key, 5) != secret.sandbox_seed(other, 5)
    path.chmod(0o644)
    with pytest.raises(secret.BadKey, match="read by others"):
        secret.load_or_create(path)
    (tmp_path / "bad").write_text("abc\n")
    (tmp_path / "bad").chmod(0o600)
    with pytest.raises(secret.BadKey, match="does not hold a key"):
        secret.load_or_create(tmp_path / "bad")


# ----------------------------------------------------------------------------
# Points for computing, not for matching (round three)


@pytest.mark.parametrize("aid", course.assignments())
def test_a_table_of_the_shipped_values_earns_at_most_the_stated_share(aid):
    from tests.hostile import lookup_table_notebook
    a = course.load(aid)
    nb = lookup_table_notebook(aid, release(aid), filled(aid))
    r = grade.grade_notebook(a, nb, seed=5, key=b"t" * 32)
    visible = [c for c in r.checks if not c.hidden]
    passed = [c for c in visible if c.passed]  # the verdict, as in the learner's notebook
    assert len(passed) >= 0.75 * len(visible)  # the table answers what the notebook shows
    assert r.score <= grade.UNEARNED_SHARE * a.max_score, \
        [(c.name, c.score) for c in r.checks if c.score]
    withheld = [c for c in visible if c.withheld]
    assert withheld and all("Points withheld" in c.withheld and c.score == 0 for c in withheld)
    shown = report.gradescope_results(r)["tests"]  # and the learner is told why
    assert all(any(c.withheld in t["output"] for t in shown if t["name"] == c.name)
               for c in withheld)


def test_withholding_spares_a_bug_that_only_some_fresh_inputs_reveal():
    """A record-level check of the rule: f keeps its visible points when one
    hidden check of values passed, or when a function it relies on computes
    but has a bug; error-only hidden checks are no evidence."""
    def rec(name, hidden, passed, **kw):
        return dict(name=name, hidden=hidden, weight=1.0, outcome=outcome(passed), **kw)

    def outcome(passed):
        return model.PASSED if passed else model.Outcome(model.Kind.WRONG, "wrong",
                                                         model.Diagnosis.DIFFERENCE)

    deps = {"f": set(), "g": {"h"}, "h": set(), "k": set()}
    by_cell = {
        "c1": [rec("f: values", False, True), rec("f: fresh 1", True, False),
               rec("f: fresh 2", True, True)],
        "c2": [rec("g: values", False, True), rec("g: fresh", True, False),
               rec("h: values", False, False), rec("h: fresh 1", True, True),
               rec("h: fresh 2", True, False)],
        "c3": [rec("k: values", False, True), rec("k: raises", True, True, expects_error=True),
               rec("k: fresh", True, False)],
    }
    grade.withhold_unearned(by_cell, deps)
    marked = {r["name"] for rs in by_cell.values() for r in rs if r.get("withheld")}
    assert marked == {"k: values"}
    by_cell["c2"][3]["outcome"] = outcome(False)  # h fails every fresh input: it excuses no one
    for rs in by_cell.values():
        for r in rs:
            r.pop("withheld", None)
    grade.withhold_unearned(by_cell, deps)
    assert {r["name"] for rs in by_cell.values() for r in rs if r.get("withheld")} == \
        {"k: values", "g: values"}


# ----------------------------------------------------------------------------
# Memory per notebook, all its processes together (round three)


def test_a_notebook_cannot_use_more_memory_than_its_limit_with_many_processes(tmp_path):
    """The corpus's memory case, graded through the command line with
    --memory 300 beside an honest classmate: the forking notebook ends with
    the memory-limit event, the classmate's results equal a grading alone."""
    from autograder import secret
    from tests.hostile import MEMORY_FORK
    if not fence().get("memory", "").startswith("cgroup"):
        pytest.fail(f"no memory cgroup on this machine ({fence()}): the split budget is "
                    "tested in tests/test_sandbox.py")
    forker = filled(AID)
    forker.cells.append(nbformat.v4.new_code_cell(MEMORY_FORK.format(mb=300)))
    sub, out = tmp_path / "submitted", tmp_path / "out"
    for name, nb in (("forker", forker), ("honest", filled(AID))):
        (sub / name / AID).mkdir(parents=True)
        nbformat.write(nb, sub / name / AID / f"{AID}.ipynb")
    proc = run_cli(ROOT, "grade", sub, "--out", out, "--jobs", 2, "--memory", 300,
                   "--timeout", 60, "--seed", 9, "--quiet")
    assert proc.returncode == 0, proc.stderr
    feedback = html.unescape((returned(out, "forker", AID) / "feedback.html").read_text())
    assert "used more than the memory limit (300 MB for all of them)" in feedback
    got = json.loads((returned(out, "forker", AID) / "results.json").read_text())
    assert got["score"] == course.load(AID).max_score  # the rest of the notebook still graded
    alone = report.gradescope_results(grade.grade_notebook(
        course.load(AID), filled(AID), Limits(cell_timeout=60, memory_mb=300), seed=9,
        key=secret.load_or_create(out / secret.KEY_FILE)))
    assert json.loads((returned(out, "honest", AID) / "results.json").read_text()) == \
        json.loads(json.dumps(alone))


# ----------------------------------------------------------------------------
# Student content is inert in every view (round three)


def test_no_view_of_the_corpus_runs_or_loads_anything_of_a_student(corpus):
    """Every page and notebook rendered for the class (the students' folders,
    the formgrader's autograded notebooks as nbconvert shows them, the class
    report) has no live link, handler, remote resource or script of a
    student's; the class report never speaks a student's words."""
    from nbconvert import HTMLExporter

    from tests.test_views import assert_inert
    out = corpus["out"]
    for path in learner_files(out):
        if path.suffix == ".html":
            text = path.read_text(encoding="utf-8")
            assert "default-src 'none'" in text, path  # and the page forbids them anyway
        elif path.suffix == ".ipynb":
            text, _ = HTMLExporter().from_notebook_node(nbformat.read(path, 4))
        else:
            continue
        assert_inert(text)
    report_text = (out / "class-report.html").read_text(encoding="utf-8")
    assert "NOTE_TO_INSTRUCTOR" not in report_text and "javascript:" not in report_text
