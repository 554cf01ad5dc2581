"""Containment of student code: what it may read, write, use and leave behind."""
import os
import time

import numpy as np
import psutil
import pytest

from autograder.sandbox import Limits, Sandbox, StudentCrash, StudentError
from tests.conftest import ROOT
from tests.hostile import MEMORY_FORK as FORK_FOUR  # the corpus's case


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


# ----------------------------------------------------------------------------
# One memory budget for all of a sandbox's processes (cgroup.py)



def test_memory_is_bounded_for_all_processes_together():
    """Four children, each within the per-process limit, together 1.2 x the
    limit: the sandbox ends with the memory-limit event and its cgroup is gone."""
    from autograder import cgroup
    with Sandbox(Limits(cell_timeout=20, memory_mb=300)) as s:
        layer, where = s.info["memory"], s.memory.path if s.memory else None
        if not layer.startswith("cgroup"):
            pytest.fail(f"no memory cgroup on this machine ({s.info}): only the split "
                        "budget bounds the sum (test_split_budget_stays_within_the_limit)")
        t = time.monotonic()
        with pytest.raises(StudentCrash, match="memory limit"):
            s.exec(FORK_FOUR.format(mb=300), "<cell>", timeout=60)
        assert time.monotonic() - t < 30  # stopped when the kernel killed, not at the end
        assert cgroup.memory_event(300) in s.events
        assert not s.alive
    assert not os.path.exists(where)


def test_a_sandbox_under_its_memory_limit_is_untouched():
    with Sandbox(Limits(cell_timeout=20, memory_mb=300)) as s:
        s.exec("import numpy as np\nx = np.ones((2000, 2000)) @ np.ones((2000, 10))", "<cell>")
        assert s.events == [] and s.alive


def test_split_budget_stays_within_the_limit():
    """Without a cgroup: tasks x per-task address space <= the limit, and one
    task (a NumPy process) always gets at least the whole limit or MIN_PROCESS_MB."""
    from autograder.cgroup import MIN_PROCESS_MB, split_budget
    for limit in (256, 300, 511, 512, 1000, 2048, 4096, 10**5):
        for max_tasks in (1, 4, 64):
            tasks, each = split_budget(limit, max_tasks)
            assert 1 <= tasks <= max_tasks and tasks * each <= limit
            assert each >= min(limit, MIN_PROCESS_MB)
    assert split_budget(2048, 64) == (4, 512)
    assert split_budget(300, 64) == (1, 300)


def test_without_a_cgroup_fewer_processes_share_the_limit():
    """isolation="basic" makes no cgroup: a fork past the split budget is refused."""
    with Sandbox(Limits(cell_timeout=20, memory_mb=300, isolation="basic")) as s:
        assert s.info["memory"] in ("split", "per-process")
        if s.info["memory"] == "split":  # one task: the worker itself
            with pytest.raises(StudentError, match="BlockingIOError|Resource temporarily"):
                s.exec("import os\nos.fork()", "<cell>")


def test_the_cgroup_is_found_from_mountinfo():
    from autograder.cgroup import find_parent
    v1 = ("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
          "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    own = "4:memory:/jobs/a\n0::/\n"
    assert find_parent(v1, own) == (1, "/sys/fs/cgroup/memory/jobs/a")
    v2 = "29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    assert find_parent(v2, "0::/user.slice/grader.scope\n") == \
        (2, "/sys/fs/cgroup/user.slice/grader.scope")
    # A container's view: the mount's root is the container's own cgroup.
    inner = "29 23 0:26 /docker/x /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert find_parent(inner, "0::/docker/x\n") == (2, "/sys/fs/cgroup")
    assert find_parent("1 2 0:1 / / rw - ext4 /dev/sda rw\n", own) is None
    # The grader's processes moved to a leaf (cgroup v2's no-internal-process
    # rule): the sandboxes still go beside the leaf.
    assert find_parent(v2, "0::/grader.scope/autograder-leaf\n") == (2, "/sys/fs/cgroup/grader.scope")


def test_a_cgroup_v2_gets_its_limit_and_no_swap(tmp_path):
    """v2 files, written into a stand-in folder (this machine may have v1 only)."""
    from autograder.cgroup import MemoryCgroup
    cg = MemoryCgroup.create(300, where=(2, str(tmp_path)))
    assert cg is not None and cg.layer == "cgroup2"
    read = (lambda name: open(cg.file(name)).read())
    assert read("memory.max") == str(300 * 2**20)
    assert read("memory.swap.max") == "0" and read("memory.oom.group") == "1"
    assert cg.oom_kills() == 0
    open(cg.file("memory.events"), "w").write("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert cg.oom_kills() == 1


def test_require_refuses_a_missing_layer():
    from autograder import fence
    full = {"isolation": "namespace+uid", "tmpfs": True, "ipc_namespace": True, "landlock": 6,
            "scoped": True, "seccomp": True, "memory": "cgroup2"}
    fence.require(["all"], full)
    with pytest.raises(fence.FenceMissing, match="cgroup"):
        fence.require(["seccomp", "cgroup"], dict(full, memory="split"))
    with pytest.raises(fence.FenceMissing, match="uid"):
        fence.require(["all"], dict(full, isolation="namespace"))
    with pytest.raises(fence.FenceMissing, match="unknown"):
        fence.require(["landlok"], full)
    assert "missing: cgroup" in fence.describe(dict(full, memory="split"))


def test_a_run_states_its_fence_and_can_refuse_to_grade_without_a_layer(tmp_path):
    import subprocess
    import sys

    def grade(out, *extra):
        (tmp_path / "submitted").mkdir(exist_ok=True)
        return subprocess.run([sys.executable, "-m", "autograder", "grade",
                               str(tmp_path / "submitted"), "--out", str(tmp_path / out),
                               "--quiet", *extra], capture_output=True, text=True, cwd=ROOT,
                              timeout=300)

    proc = grade("out", "--require-fence", "all")
    line = next(x for x in proc.stderr.splitlines() if x.startswith("fence: "))
    if "missing: none" in line:
        assert proc.returncode == 0, proc.stderr
    else:  # a machine without some layer: the run refuses, and says which
        assert proc.returncode == 2 and "refusing to grade" in proc.stderr, proc.stderr
    proc = grade("refused", "--require-fence", "seccomp,landlok")
    assert proc.returncode == 2 and "unknown fence layer(s) landlok" in proc.stderr
    assert not (tmp_path / "refused").exists()  # refused before anything was written
