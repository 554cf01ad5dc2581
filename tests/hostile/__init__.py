"""A corpus of hostile and broken submissions, written as code.

Every case is built from the learner notebook of ``dcl_backprop`` (untouched,
or filled with the reference solutions) plus an injected cell or a change to
the file, so the corpus follows the assignment when it changes.  Each case
says what grading must make of it:

- ``score``: the range the score must fall in, as fractions of the maximum;
- ``says``: what the learner's feedback must mention (each entry a tuple of
  alternatives, any one of which will do, compared case-insensitively);
- ``status``: the status in grades.csv;
- ``clean``: its feedback reports no trouble at all;
- ``folder``: the student folder's name (str, or bytes for a name that is
  not UTF-8) when it is not the case's name; such a student is graded under
  ``classroom.student_id``'s safe id.

``tests/test_hostile.py`` grades all of them in one class, through the real
command line, beside honest students whose results must not change.
"""
import json
import os
import textwrap
from dataclasses import dataclass, field

import nbformat

AID = "dcl_backprop"


@dataclass
class Case:
    name: str
    build: object            # build(ctx) -> bytes, or build(ctx, folder) writing the layout itself
    score: tuple = (1.0, 1.0)
    says: list = field(default_factory=list)
    status: str = "graded"
    layout: bool = False     # build writes into the submission folder itself
    clean: bool = False      # nothing may go wrong while it runs (no events, no cell errors)
    folder: object = None    # the student folder's name, if not ``name``


class Context:
    """What the builders use: the learner notebooks and the paths attacked."""

    def __init__(self, release, filled, root, out, checkout):
        self.release, self.filled, self.root, self.out = release, filled, str(root), str(out)
        self.checkout = str(checkout)  # the shared checkout: attacked too, never changed


def _copy(nb):
    return nbformat.from_dict(json.loads(json.dumps(nb)))


def _bytes(nb):
    for i, c in enumerate(nb.cells):
        c["id"] = f"c{i}"
    return (nbformat.writes(nb) + "\n").encode()


def _answer_index(nb, gid=None):
    return [i for i, c in enumerate(nb.cells)
            if c.get("metadata", {}).get("nbgrader", {}).get("solution")
            and (gid is None or c.metadata["nbgrader"]["grade_id"] == gid)]


def inject(code, base="filled", where="end"):
    """A builder: the notebook with one more code cell.

    where: "end", "start" (before every answer cell) or "after:<grade_id>".
    """
    def build(ctx):
        nb = _copy(ctx.filled if base == "filled" else ctx.release)
        src = textwrap.dedent(code).format(root=ctx.root, out=ctx.out, checkout=ctx.checkout)
        cell = nbformat.v4.new_code_cell(src)
        if where == "end":
            nb.cells.append(cell)
        elif where == "start":
            nb.cells.insert(_answer_index(nb)[0], cell)
        else:
            nb.cells.insert(_answer_index(nb, where.split(":", 1)[1])[0] + 1, cell)
        return _bytes(nb)
    return build


def transform(fn, base="filled"):
    def build(ctx):
        nb = _copy(ctx.filled if base == "filled" else ctx.release)
        fn(nb)
        return _bytes(nb)
    return build


def _rename_ids(nb):
    for i in _answer_index(nb):
        nb.cells[i].metadata["nbgrader"]["grade_id"] = f"mine_{i}"


def _mark_as_tests(nb):
    for i in _answer_index(nb):
        nb.cells[i].metadata["nbgrader"].update(grade=True, points=100)


def _edit_tests(nb):
    for c in nb.cells:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            c.source = "pass"
            meta["points"] = 999


def _delete_softmax(nb):
    del nb.cells[_answer_index(nb, "answer_softmax")[0]]


def _duplicate_sigmoid(nb):
    i = _answer_index(nb, "answer_sigmoid")[0]
    broken = _copy(nb).cells[i]
    broken.source = "def sigmoid(z):\n    return z\n"
    nb.cells.insert(i, broken)  # the correct copy comes last and wins


HOSTILE_MARKDOWN = ("[Autograder log (click to expand)](javascript:alert(1))\n\n"
                    "![](https://attacker.example/b.png)\n\n<img src=x onerror=alert(1)>\n"
                    "<script>alert(1)</script>\n")


def _hostile_markdown(nb):
    """Markdown, a raw cell and a grade id that would be live markup in a view."""
    nb.cells.insert(2, nbformat.v4.new_markdown_cell(HOSTILE_MARKDOWN))
    nb.cells.insert(3, nbformat.v4.new_raw_cell("<script>alert('raw')</script>"))
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.metadata["nbgrader"] = {"grade_id": "[log](javascript:alert('gid'))", "solution": True,
                                 "grade": False, "locked": False}
    nb.cells.insert(4, cell)


SENTENCE_EXCEPTION = ("class NOTE_TO_INSTRUCTOR_this_check_is_broken_add_6_points(Exception):\n"
                      "    pass\n"
                      "def relative_error(a, b):\n"
                      "    raise NOTE_TO_INSTRUCTOR_this_check_is_broken_add_6_points('see me')\n")


def _foreign_kernel(nb):
    nb.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    nb.metadata["language_info"] = {"name": "R"}


def _nbformat3(ctx):
    return nbformat.writes(nbformat.convert(_copy(ctx.filled), 3), version=3).encode()


def _junk_cells(ctx):
    nb = json.loads(_bytes(_copy(ctx.filled)))
    nb["cells"][:0] = [1, "x", None, {"cell_type": "code", "source": 5, "metadata": []},
                       {"cell_type": "code", "source": ["x = ", 3], "metadata": {"nbgrader": 7}}]
    return json.dumps(nb).encode()


def _renamed_notebook(ctx, folder):
    (folder / "homework.ipynb").write_bytes(_bytes(_copy(ctx.filled)))


def _directory(ctx, folder):
    (folder / f"{AID}.ipynb").mkdir()


def _fifo(ctx, folder):
    os.mkfifo(folder / f"{AID}.ipynb")


def _symlink(ctx, folder):
    os.symlink(os.path.join(ctx.root, "solutions", f"{AID}.py"), folder / f"{AID}.ipynb")


def _huge(ctx, folder):
    with open(folder / f"{AID}.ipynb", "wb") as f:
        f.truncate(100 * 2**20)  # 100 MB (sparse: costs no disk)


# A table of what the learner notebook shows: every call its visible checks
# make (inputs the notebook's code builds) and what the reference returned
# (the expected values it ships), looked up by the function's arguments.
TABLE_KEY = """
def _key(v):
    import numpy as _np
    if isinstance(v, _np.ndarray):
        return ("a", v.shape, v.dtype.str, v.tobytes())
    if isinstance(v, dict):
        return ("d",) + tuple((k, _key(x)) for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ("l",) + tuple(_key(x) for x in v)
    if isinstance(v, (int, float, str, bool)) or v is None:
        return ("v", repr(v))
    return ("?",)
"""


def lookup_table_notebook(aid, release_nb, filled_nb):
    """The release notebook of ``aid`` answering every graded function from a
    table of the visible checks' calls (round three: points without computing)."""
    import pickle

    from autograder import checks, course, grade
    from autograder.sandbox import Sandbox
    ns, table = {}, {}
    exec(TABLE_KEY, ns)
    original = Sandbox.call

    def record(self, name, args, kwargs, **kw):
        key = ns["_key"]((name, list(args), dict(kwargs)))
        result = original(self, name, args, kwargs, **kw)
        if not checks._hidden and len(pickle.dumps(result[0])) < 2**16:
            table[key] = result[0]  # (large random samples are no shipped value)
        return result

    a = course.load(aid)
    Sandbox.call = record
    try:
        grade.grade_notebook(a, filled_nb, seed=0)
    finally:
        Sandbox.call = original
    code = TABLE_KEY + (
        f"import pickle\n_table = pickle.loads(bytes.fromhex({pickle.dumps(table).hex()!r}))\n"
        "def _answer(name):\n    def f(*args, **kwargs):\n"
        "        return _table.get(_key((name, list(args), dict(kwargs))))\n    return f\n"
        f"for _name in {a.functions!r}:\n    globals()[_name] = _answer(_name)\n")
    nb = _copy(release_nb)
    nb.cells.append(nbformat.v4.new_code_cell(code))
    return nb


def _lookup_table(ctx):
    return _bytes(lookup_table_notebook(AID, ctx.release, ctx.filled))


def _surrogate_grade_id(ctx):
    nb = json.loads(_bytes(_copy(ctx.filled)))
    nb["cells"].append({"cell_type": "code", "source": "x = 1\n", "metadata": {
        "nbgrader": {"grade_id": "mine_\udcff", "solution": True}}, "outputs": [],
        "execution_count": None, "id": "surrogate"})
    return json.dumps(nb, ensure_ascii=True).encode()


def _non_utf8_file_name(ctx, folder):
    (folder / os.fsdecode(b"caf\xe9.ipynb")).write_bytes(_bytes(_copy(ctx.filled)))


# Four children, each within the per-process limit, together 1.2 x the
# notebook's limit of {mb} MB (graded in a class of its own with a small
# --memory by test_hostile.py: touching gigabytes would outlast the corpus's
# cell time limit).
MEMORY_FORK = """
import os, time
import numpy as np
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        block = np.ones(int(1.2 * {mb} / 4 * 2**20), dtype=np.uint8)  # every page written
        time.sleep(30)  # holds it: only the memory limit ends this cell in time
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
"""


# The round-three seed read-back: the hidden process recognises its first
# hidden input, finds the grading seed that draws it (trying seeds in a
# range, under the derivation the grader used before the course key and
# under the keyless HMAC), then fails ``seed % 5`` of the cell's 5 hidden
# checks on purpose, so "k of 5 passed" spells the seed.  No braces: the
# builder formats the code.
SEED_SIGNAL = """
import hashlib as _hl, hmac as _hm, zlib as _zl
import numpy as _np
_SEEDS = list(range(0, 40)) + list(range(424200, 424300))
_state = [None, 0]

def _first_input(seed, derivation):
    if derivation == "crc32":
        rng = _np.random.default_rng([seed, _zl.crc32(b"test_activations")])
    else:
        mac = _hm.new(b"", ("hidden:%d:test_activations" % seed).encode(), _hl.sha256)
        rng = _np.random.default_rng(int.from_bytes(mac.digest(), "little"))
    return rng.normal(size=(3, 4)) * 5

def _recover(z):
    for d in ("crc32", "hmac"):
        for s in _SEEDS:
            w = _first_input(s, d)
            if _np.array_equal(w[0, 2:], z[0, 2:]) and _np.array_equal(w[2, 2:], z[2, 2:]):
                return s
    return None

def _signal(fn):
    def f(z):
        out = fn(z)
        if isinstance(z, _np.ndarray) and z.shape == (3, 4) and z[0, 1] == -708.0:
            if _state[1] == 0:
                _state[0] = _recover(z)
            k, _state[1] = _state[1], _state[1] + 1
            if _state[0] is not None and k < _state[0] % 5:
                return out + 1.0
        return out
    return f

for _n in ("sigmoid", "relu", "sigmoid_grad", "tanh_grad", "relu_grad"):
    globals()[_n] = _signal(globals()[_n])
"""


# Every graded function of the assignment, made to zero its array arguments and
# empty its dict arguments after computing its result from zeroed copies: the
# constants a reference fed with zeros returns.  Against a grader that let
# in-place changes reach the values it compares with, this earned full marks.
ZERO_INPUTS = '''
import copy as _copy
import numpy as _np

def _zeroed(v):
    if isinstance(v, _np.ndarray) and v.dtype.kind in "fc":
        return _np.zeros_like(v)
    if isinstance(v, dict):
        return {k: _zeroed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_zeroed(x) for x in v]
    return v

def _wreck(v):
    if isinstance(v, _np.ndarray) and v.dtype.kind in "fc" and v.flags.writeable:
        v[...] = 0
    elif isinstance(v, dict):
        for x in v.values():
            _wreck(x)
        v.clear()
    elif isinstance(v, list):
        for x in v:
            _wreck(x)

def _attack(fn, mutate):
    def f(*args, **kwargs):
        out = fn(*_zeroed(list(args)), **_zeroed(kwargs))
        if mutate:
            for a in list(args) + list(kwargs.values()):
                _wreck(a)
        return out
    f.__name__ = fn.__name__
    return f

for _name in FUNCTIONS:
    globals()[_name] = _attack(globals()[_name], mutate=MUTATE)
'''


def zero_inputs(functions, mutate):
    """The cell that makes ``functions`` return constants (see ZERO_INPUTS)."""
    return ZERO_INPUTS.replace("FUNCTIONS", repr(list(functions))).replace("MUTATE", repr(mutate))


# Functions of the learner's own that look for the grader's data where it is not.
SNOOP_FRAMES = '''
import sys
def _find(names):
    f = sys._getframe(1)
    while f is not None:
        for n in names:
            if n in f.f_locals:
                return f.f_locals[n]
        f = f.f_back
    return None
def sigmoid(z):
    want = _find(["want", "ref"])
    return want.sigmoid(z) if hasattr(want, "sigmoid") else want
relu = sigmoid_grad = tanh_grad = relu_grad = softmax = log_softmax = sigmoid
'''

EVIL_OBJECTS = '''
class Evil:
    def __array__(self, *a, **k):
        raise RuntimeError("no array for you")
    def __eq__(self, other):
        return True
    def __float__(self):
        return 1.0
    def __len__(self):
        return 10**9
def sigmoid(z):
    return Evil()
def relu(z):
    return Evil()
'''

CASES = [
    Case("honest", transform(lambda nb: None), clean=True),
    # -- attacks on the grader and on other processes
    Case("kill_grader", inject("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"),
         says=[("operation not permitted",)]),
    # Self-limiting: it only fires where it cannot signal the grader (with an
    # unfenced grader running as root, kill(-1) would take the machine down).
    Case("kill_everyone", inject("import os, signal\ntry:\n    os.kill(os.getppid(), 0)\n"
                                 "except PermissionError:\n    try:\n"
                                 "        os.kill(-1, signal.SIGKILL)\n    except OSError:\n"
                                 "        pass\nelse:\n"
                                 "    raise SystemError('no fence: the attack was not run')\n")),
    Case("kill_own_group", inject("import os, signal\nos.killpg(0, signal.SIGKILL)\n"),
         says=[("process stopped",)]),
    Case("fork_bomb", inject("import os\nwhile True:\n    os.fork()\n"),
         says=[("processes or threads",)]),
    Case("thread_bomb", inject("import threading, time\nwhile True:\n"
                               "    threading.Thread(target=time.sleep, args=(60,)).start()\n"),
         says=[("processes or threads",)]),
    Case("many_files", inject("i = 0\nwhile True:\n    open(f'f{{i}}', 'w').close()\n    i += 1\n"),
         says=[("working folder",)]),
    Case("huge_file", inject("with open('big', 'wb') as f:\n    for _ in range(4096):\n"
                             "        f.write(b'x' * 2**20)\n"),
         says=[("working folder", "file too large")]),
    Case("memory_bomb", inject("x = bytearray(10**11)\n"), says=[("memoryerror",)]),
    # Four children, each within the per-process limit, together 1.2 x the
    # notebook's limit (the corpus runs with the default --memory 2048).
    # The grading seed read back through a hidden pass count (round three):
    # under the run's course key it finds no seed and so signals nothing.
    Case("seed_read_back", inject(SEED_SIGNAL), clean=True),
    # Points without computing (round three): a table of the shipped values
    # earns at most grade.UNEARNED_SHARE of the points.
    Case("lookup_table", _lookup_table, score=(0.0, 0.05), says=[("points withheld",)]),
    Case("runaway", inject("while True:\n    pass\n", where="start"),
         says=[("ran for more than",)]),
    Case("flood", inject("while True:\n    print('x' * 10000)\n"),
         says=[("printed more than",)]),
    Case("recursion_bomb", inject("import sys\nsys.setrecursionlimit(10**7)\n"
                                  "def f(n):\n    return f(n + 1)\nf(0)\n"),
         says=[("process stopped", "recursion")]),
    Case("network", inject("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)\n"),
         says=[("unreachable", "permission denied", "not permitted")]),
    Case("proc_snoop", inject("import os\nopen(f'/proc/{{os.getppid()}}/environ').read()\n"),
         says=[("permission denied",)]),
    # -- leaving the process or the request loop
    Case("os_exit", inject("import os\nos._exit(3)\n"), says=[("exited with status 3",)]),
    Case("sys_exit", inject("import sys\nsys.exit(1)\n"), says=[("systemexit",)]),
    Case("keyboard_interrupt", inject("raise KeyboardInterrupt\n"),
         says=[("keyboardinterrupt",)]),
    Case("delete_builtins", inject("import builtins\ndel builtins.len, builtins.isinstance\n"
                                   "len([])\n", where="start"),
         says=[("nameerror",)]),
    Case("shadow_worker_names", inject("def send(*a):\n    pass\ndef recv(*a):\n    pass\n"
                                       "Encoder = Decoder = main = serve = None\n", where="start"),
         clean=True),
    Case("fork_and_return", inject("import os\nchild = os.fork()\n"), clean=True),
    # -- the grader's private channel
    Case("close_channel", inject("import os\nfor fd in range(3, 64):\n    try:\n"
                                 "        os.close(fd)\n    except OSError:\n        pass\n"),
         says=[("process stopped", "closed the grader")]),
    Case("garbage_channel", inject("import os\nfor fd in range(3, 64):\n    try:\n"
                                   "        os.write(fd, b'\\xff' * 64)\n    except OSError:\n"
                                   "        pass\n"),
         says=[("private channel",)]),
    Case("forged_reply", inject("import os, json, struct\nm = json.dumps({{'ok': True, 'seq': 999}})"
                                ".encode()\nfor fd in range(3, 64):\n    try:\n"
                                "        os.write(fd, struct.pack('<Q', len(m)) + m)\n"
                                "    except OSError:\n        pass\n"),
         says=[("private channel",)]),
    Case("stalled_frame", inject("import os, struct, time\nfor fd in range(3, 64):\n    try:\n"
                                 "        os.write(fd, struct.pack('<Q', 100) + b'{{')\n"
                                 "    except OSError:\n        pass\ntime.sleep(30)\n"),
         says=[("ran for more than", "private channel")]),
    # -- values that are not what they seem
    Case("evil_objects", inject(EVIL_OBJECTS), score=(0.2, 0.95), says=[("evil",)]),
    Case("enormous_array", inject("import numpy as np\ndef softmax(z):\n"
                                  "    return np.zeros((6000, 6000))\n"),
         score=(0.3, 0.99), says=[("too large",)]),
    Case("deep_nesting", inject("def relu(z):\n    x = []\n    for _ in range(10**5):\n"
                                "        x = [x]\n    return x\n"),
         score=(0.3, 0.99), says=[("nested",)]),
    Case("slow_function", inject("import time\n_sigmoid = sigmoid\ndef sigmoid(z):\n"
                                 "    time.sleep(2)\n    return _sigmoid(z)\n"),
         score=(0.3, 0.99), says=[("used up the cell's time limit",)]),
    # -- reaching for what the grader knows
    Case("import_solutions", inject(f"import sys\nsys.path.insert(0, {{root!r}})\n"
                                    f"from solutions.{AID} import *\n", base="release"),
         score=(0.0, 0.0), says=[("modulenotfounderror", "permission denied")]),
    Case("read_instructor_files",
         inject("import glob\nfor p in [{root!r} + '/solutions/" + AID + ".py', "
                "{root!r} + '/source/" + AID + "/" + AID + ".md', {out!r} + '/gradebook.db']:\n"
                "    exec(open(p).read())\n", base="release"),
         score=(0.0, 0.0), says=[("permission denied",)]),
    Case("write_instructor_files",
         inject("import os\nfor p in [{root!r} + '/solutions/evil.py', "
                "{root!r} + '/source/" + AID + "/" + AID + ".md', "
                "{root!r} + '/exercises/" + AID + "/" + AID + ".ipynb', "
                "{out!r} + '/grades.csv', {out!r} + '/gradebook.db', {out!r} + '/honest/x', "
                "{checkout!r} + '/solutions/evil.py', "
                "{root!r} + '/solutions/" + AID + ".py']:\n"
                "    try:\n        open(p, 'a').write('x')\n    except OSError as e:\n"
                "        last = e\nraise last\n"),
         says=[("permission denied",)]),
    Case("patch_numpy", inject("import numpy as np\nnp.allclose = lambda *a, **k: True\n"
                               "np.array_equal = lambda *a, **k: True\n", base="release"),
         score=(0.0, 0.0)),
    Case("swallow_exceptions", inject("import sys, builtins\nsys.excepthook = lambda *a: None\n"
                                      "class NotImplementedError(Exception):\n    pass\n"
                                      "builtins.NotImplementedError = NotImplementedError\n",
                                      base="release", where="start"),
         score=(0.0, 0.0)),
    Case("inspect_frames", inject(SNOOP_FRAMES, base="release"), score=(0.0, 0.0)),
    Case("stderr_noise", inject("import sys\nsys.stderr.write('warning: ' * 100)\n"
                                "_s = sigmoid\ndef sigmoid(z):\n    sys.stderr.write('!')\n"
                                "    return _s(z)\n"), clean=True),
    # -- tampering with the notebook
    Case("edited_test_cells", transform(_edit_tests, base="release"), score=(0.0, 0.0)),
    Case("renamed_grade_ids", transform(_rename_ids), says=[("not part of this assignment",)]),
    Case("marked_as_tests", transform(_mark_as_tests), clean=True),
    Case("deleted_answer_cell", transform(_delete_softmax), score=(0.3, 0.99),
         says=[("missing",)]),
    Case("duplicated_cell", transform(_duplicate_sigmoid), says=[("appears 2 times",)]),
    Case("foreign_kernel", transform(_foreign_kernel), says=[("not python",)]),
    Case("nbformat3", _nbformat3, clean=True),
    Case("junk_cells", _junk_cells, score=(0, 0), says=[("not valid",)], status="unreadable"),
    # -- files that are not (quite) notebooks
    Case("renamed_notebook", _renamed_notebook, layout=True, says=[("was named",)]),
    Case("empty_file", lambda ctx: b"", score=(0, 0), says=[("empty",)], status="unreadable"),
    Case("invalid_json", lambda ctx: b'{"cells": [', score=(0, 0), says=[("not valid",)],
         status="unreadable"),
    Case("binary_junk", lambda ctx: bytes(range(256)) * 40, score=(0, 0),
         says=[("not utf-8",)], status="unreadable"),
    Case("huge_notebook", _huge, layout=True, score=(0, 0), says=[("larger than",)],
         status="unreadable"),
    Case("directory", _directory, layout=True, score=(0, 0), says=[("no notebook",)],
         status="missing"),
    Case("fifo", _fifo, layout=True, score=(0, 0), says=[("no notebook",)], status="missing"),
    Case("symlink", _symlink, layout=True, score=(0, 0), says=[("symbolic link",)],
         status="unreadable"),
    # -- strings and names that are not what a report expects (round two)
    Case("surrogate_error", inject('raise ValueError("boom \\udcff")\n'), says=[("boom",)]),
    Case("surrogate_result", inject('def relu(z):\n    return "\\udcff" * 10\n'),
         score=(0.5, 0.99), says=[("got a string",)]),
    Case("huge_texts", inject('def relu(z):\n    return "x" * 30_000_000\n'
                              'def sigmoid(z):\n    raise ValueError("y" * 30_000_000)\n'),
         score=(0.3, 0.95), says=[("got a string",)]),
    Case("surrogate_grade_id", _surrogate_grade_id, says=[("not part of this assignment",)]),
    Case("non_utf8_file_name", _non_utf8_file_name, layout=True, says=[("was named",)]),
    Case("latin1_folder", transform(lambda nb: None), folder=b"caf\xe9",
         says=[("cannot be used as a student id",)]),
    Case("formula_id", transform(lambda nb: None), folder="=2+5",
         says=[("cannot be used as a student id",)]),
    Case("formula_id_at", transform(lambda nb: None), folder="@SUM(1+1)",
         says=[("cannot be used as a student id",)]),
    Case("journal_folder", transform(lambda nb: None), folder="gradebook.db-journal",
         says=[("cannot be used as a student id",)]),
    # -- kernel objects two sandboxes could share (round two)
    Case("sysv_shm", inject("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                            "for _ in range(6):\n"
                            "    if libc.shmget(0, 200 * 2**20, 0o1666) < 0:\n"
                            "        e = ctypes.get_errno()\n"
                            "        raise OSError(e, os.strerror(e))\n"),
         says=[("not permitted",)]),
    Case("keyring", inject("import ctypes, os, platform\n"
                           "libc = ctypes.CDLL(None, use_errno=True)\n"
                           "nr = {{'x86_64': 248, 'aarch64': 217}}[platform.machine()]\n"
                           "if libc.syscall(nr, b'user', b'grading-secret', b'x', 1, -3) < 0:\n"
                           "    e = ctypes.get_errno()\n"
                           "    raise OSError(e, os.strerror(e))\n"),
         says=[("not permitted",)]),
    Case("file_locks", inject("import fcntl, os, struct, numpy\n"
                              "fd = os.open(numpy.__file__, os.O_RDONLY)\n"
                              "fcntl.fcntl(fd, 37, struct.pack('hhqqi', 0, 0, 0, 1, 0))\n"),
         says=[("not permitted",)]),
    Case("file_flock", inject("import fcntl, os, numpy\n"
                              "fcntl.flock(os.open(numpy.__file__, os.O_RDONLY), fcntl.LOCK_SH)\n"),
         says=[("not permitted",)]),
    Case("show_settings", inject("import gc, os, sys\ntry:\n"
                                 "    cmdline = open('/proc/self/cmdline').read()\n"
                                 "except OSError as e:\n    cmdline = repr(e)\n"
                                 "found = [repr(o)[:300] for o in gc.get_objects() "
                                 "if isinstance(o, dict) and 'sandbox_seed' in o]\n"
                                 "raise ValueError(repr(sys.argv) + repr(dict(os.environ)) + "
                                 "cmdline + repr(found))\n"),
         says=[("valueerror",)]),
    # -- the private channel (round two)
    Case("forged_then_sleep", inject("import json, os, struct, sys, time\n"
                                     "seq = sys._getframe(1).f_locals['msg']['seq']\n"
                                     "m = json.dumps({{'ok': True, 'seq': seq}}).encode()\n"
                                     "os.write(int(sys.argv[2]), struct.pack('<Q', len(m)) + m)\n"
                                     "time.sleep(60)\n"),
         # it hides a cell that never ends, which then runs in every restart: its own loss
         score=(0.0, 0.2), says=[("time limit", "ran for more than")]),
    Case("nested_frame", inject("import os, struct, sys\n"
                                "seq = sys._getframe(1).f_locals['msg']['seq']\n"
                                "m = b'[' + b'{{}},' * (6 * 2**20) + b'{{}}]'\n"
                                "os.write(int(sys.argv[2]), struct.pack('<Q', len(m)) + m)\n"),
         says=[("private channel",)]),
    # -- words that would speak in the grader's voice or run in an instructor's page
    Case("hostile_markdown", transform(_hostile_markdown), says=[("not part of this assignment",)]),
    Case("sentence_exception", inject(SENTENCE_EXCEPTION), score=(0.5, 0.99),
         says=[("its own class 'note_to_instructor",)]),
    Case("zz_honest", transform(lambda nb: None), clean=True),
]
