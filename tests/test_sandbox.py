"""Containment of student code: what it may read, write, use and leave behind."""
import os
import time

import numpy as np
import psutil
import pytest

from autograder.sandbox import Limits, Sandbox, StudentCrash, StudentError
from tests.conftest import ROOT


@pytest.fixture
def sb():
    with Sandbox(Limits(cell_timeout=5, memory_mb=1024, flood_mb=2)) as s:
        yield s


def test_cannot_read_the_reference_solutions(sb):
    if not sb.landlock:
        pytest.fail("this kernel has no Landlock: the file fence cannot be tested")
    # Permission denied by Landlock, or no way through a private folder on the way.
    assert (ROOT / "solutions" / "dcl_backprop.py").is_file()
    with pytest.raises(StudentError, match="PermissionError|FileNotFoundError"):
        sb.exec(f"open({str(ROOT / 'solutions' / 'dcl_backprop.py')!r}).read()", "<cell>")
    with pytest.raises(StudentError):
        sb.exec("import solutions.dcl_backprop", "<cell>")


def test_can_only_write_in_its_scratch_folder(sb, tmp_path):
    sb.exec("open('mine.txt', 'w').write('ok')", "<cell>")
    with pytest.raises(StudentError, match="PermissionError"):
        sb.exec(f"open({str(tmp_path / 'evil.txt')!r}, 'w').write('x')", "<cell>")
    assert not (tmp_path / "evil.txt").exists()


def test_infinite_loop_is_stopped(sb):
    t = time.monotonic()
    with pytest.raises(StudentCrash, match="timed out"):
        sb.exec("while True: pass", "<cell>", timeout=1)
    assert time.monotonic() - t < 5
    assert any("was stopped" in e for e in sb.events)


def test_memory_limit(sb):
    with pytest.raises((StudentError, StudentCrash)):
        sb.exec("x = bytearray(3 * 2**30)", "<cell>")


def test_output_flood_is_stopped(sb):
    with pytest.raises(StudentCrash):
        sb.exec("while True: print('x' * 10000)", "<cell>", timeout=20)
    assert any("printed more than" in e for e in sb.events)


def test_no_process_is_left_behind():
    s = Sandbox(Limits(cell_timeout=5)).start()
    s.exec("import subprocess, sys\n"
           "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
           "pid = p.pid", "<cell>")
    pids = [c.pid for c in psutil.Process(s.proc.pid).children(recursive=True)]
    assert pids
    s.close()
    time.sleep(0.2)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)


def test_patching_numpy_in_the_sandbox_does_not_reach_the_grader(sb):
    sb.exec("import numpy as np\nnp.allclose = lambda *a, **k: True\n"
            "def f(x):\n    return x * 0\n", "<cell>")
    out, _, _ = sb.call("f", [np.ones(3)], {})
    assert not np.allclose(out, np.ones(3))


def test_arguments_changed_in_place_come_back_as_in_a_notebook(sb):
    from autograder import calls
    sb.exec("def g(x, d):\n    x[0] = 7.0\n    d['k'] = 1\n    return None\n", "<cell>")
    x, d = np.zeros(2), {}
    _, after, _ = sb.call("g", [x, d], {})
    assert calls.changed_arguments("g", [np.zeros(2), {}], {}, after, (set(), set())) == \
        ["argument 1", "argument 2"]
    calls.give_back([x, d], {}, after)
    assert x[0] == 7.0 and d == {"k": 1}


def test_warnings_of_a_call_come_back_and_obey_the_checks_filters(sb):
    import warnings
    from autograder import calls
    sb.exec("import numpy as np\ndef f(z):\n    return 1 / (1 + np.exp(-z))\n", "<cell>")
    _, _, warned = sb.call("f", [np.array([-1000.0])], {})
    assert warned and warned[0][0] == "RuntimeWarning" and "overflow" in warned[0][1]
    calls.relay_warnings(warned)  # default filters: nothing happens
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeWarning, match="overflow"):
            calls.relay_warnings(warned)
