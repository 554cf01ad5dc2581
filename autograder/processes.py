"""The student's processes from the outside: uids, CPU time, the kill, scratch folders.

- ``UidSlot``: one unprivileged uid per live sandbox when the grader is root
  (an flock per uid in a root-only folder), so a sandbox's processes are
  known by their uid and nothing else runs under it.
- ``StudentClock``: the time charged to a sandbox.  A time limit counts what
  the student's code would have taken on an idle machine, not how busy the
  machine is: the wall-clock time of a request minus the time its process
  waited for a CPU (the kernel's schedstat run delay), or the CPU time of
  all its processes if that is more (a student that starts many processes
  is charged for all of them).  So a classmate's CPU hog, or a loaded CI
  machine, changes no score; it only makes grading slower.
- ``kill_tree``: the process group, every process of the sandbox's uid, and
  whatever the grading process adopted as a subreaper.
- ``scratch_folder``: every scratch folder of a grading run lives in one
  parent folder that the run removes at its end, whatever happened to the
  processes that made them.
"""
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

UID_BASE = int(os.environ.get("AUTOGRADER_UID_BASE", 2_100_000_000))
UID_SLOTS = 4096


# ----------------------------------------------------------------------------
# One unprivileged uid per live sandbox (grader running as root)


class UidSlot:
    """A uid no other sandbox uses while this one lives (an flock per uid).

    The lock files live in a root-only folder; if none can be had, the
    sandbox runs without a uid of its own (and says so in its report).
    """

    DIR = "/run/autograder-uids"

    def __init__(self):
        os.makedirs(self.DIR, mode=0o700, exist_ok=True)
        st = os.lstat(self.DIR)
        if st.st_uid != 0 or st.st_mode & 0o077 or not os.path.isdir(self.DIR):
            raise OSError(f"{self.DIR} is not a private folder of root's")
        start = (os.getpid() * 7919 + time.monotonic_ns()) % UID_SLOTS
        for i in range(UID_SLOTS):
            n = (start + i) % UID_SLOTS
            fd = os.open(f"{self.DIR}/{n}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.fd, self.uid = fd, UID_BASE + n
            kill_uid(self.uid)  # anything a crashed earlier grader left behind
            return
        raise RuntimeError("no free sandbox uid")

    def release(self):
        kill_uid(self.uid)
        os.close(self.fd)


def processes_of(uid):
    """psutil Processes whose real uid is ``uid``."""
    import psutil
    found = []
    for p in psutil.process_iter(["uids"]):
        try:
            if p.info["uids"] and p.info["uids"].real == uid:
                found.append(p)
        except (psutil.Error, OSError):
            pass
    return found


def kill_uid(uid):
    """Kill every process whose real uid is ``uid`` (all of them a sandbox's)."""
    try:
        import psutil
    except ImportError:
        return
    for _ in range(5):  # what was forking in between is caught on a next round
        found = processes_of(uid)
        for p in found:
            try:
                p.kill()
            except (psutil.Error, OSError):
                pass
        if not found:
            return


def reap_orphans():
    """Kill sandbox processes whose grader died (their uid's lock is free),
    and remove the memory cgroups such graders left."""
    if os.geteuid() == 0:
        from .cgroup import sweep
        sweep()
    if os.geteuid() != 0 or not os.path.isdir(UidSlot.DIR):
        return
    try:
        import psutil
        uids = {p.info["uids"].real for p in psutil.process_iter(["uids"])
                if p.info["uids"] and UID_BASE <= p.info["uids"].real < UID_BASE + UID_SLOTS}
    except Exception:
        return
    for uid in uids:
        fd = os.open(f"{UidSlot.DIR}/{uid - UID_BASE}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            kill_uid(uid)
        except OSError:
            pass  # a live sandbox holds it
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------
# Time charged to a sandbox


def run_delay(pid):
    """Seconds the main thread of ``pid`` has waited, runnable, for a CPU; None
    where the kernel does not say (no /proc/<pid>/schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class StudentClock:
    """Charged seconds of one sandbox since ``start()``; see the module docstring."""

    def __init__(self, pid, uid=None):
        self.pid, self.uid = pid, uid

    def _cpu(self):
        """CPU seconds of the sandbox's processes, live ones and those they reaped."""
        try:
            import psutil
            procs = processes_of(self.uid) if self.uid is not None else \
                [psutil.Process(self.pid)] + psutil.Process(self.pid).children(recursive=True)
        except Exception:
            return 0.0
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except Exception:
                pass
        return total

    def start(self):
        self.wall0, self.delay0, self.cpu0 = time.monotonic(), run_delay(self.pid), None
        return self

    def charged(self, with_cpu=True):
        wall = time.monotonic() - self.wall0
        delay = run_delay(self.pid)
        own = wall if delay is None or self.delay0 is None else wall - (delay - self.delay0)
        if with_cpu:
            cpu = self._cpu()
            if self.cpu0 is None:
                self.cpu0 = cpu  # measured late (the first poll): slightly generous
            own = max(own, cpu - self.cpu0)
        return max(0.0, own)

    @property
    def wall(self):
        return time.monotonic() - self.wall0


# ----------------------------------------------------------------------------
# The kill


_SUBREAPER = False
_LIVE = set()                 # pids of the sandboxes this process runs now
_LIVE_LOCK = threading.Lock()  # a sweep never sees a sandbox half started


def kill_tree(proc):
    """Kill the student's process, its group and anything it left behind."""
    if proc is None:
        return
    try:
        import psutil
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
    except Exception:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    with _LIVE_LOCK:
        _LIVE.discard(proc.pid)
        if _SUBREAPER:
            try:
                import psutil
                # A grading process has no children but sandboxes, and as a
                # subreaper it adopts what they orphan: every child that is
                # not a live sandbox is a student's leftover.
                for child in psutil.Process().children():
                    if child.pid not in _LIVE:
                        for p in child.children(recursive=True) + [child]:
                            p.kill()
                        try:
                            os.waitpid(child.pid, os.WNOHANG)
                        except OSError:
                            pass
            except Exception:
                pass


def spawn(*args, **kwargs):
    """subprocess.Popen, registered as a live sandbox before any sweep can see it."""
    with _LIVE_LOCK:
        proc = subprocess.Popen(*args, **kwargs)
        _LIVE.add(proc.pid)
    return proc


def become_subreaper():
    """Adopt orphaned descendants, so a double fork cannot outlive grading.

    Only for a process that does nothing but grade: from then on every child
    it has is taken to be a student's and is killed after each submission.
    """
    global _SUBREAPER
    _SUBREAPER = True
    try:
        import ctypes
        PR_SET_CHILD_SUBREAPER = 36
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


# ----------------------------------------------------------------------------
# Scratch folders

SCRATCH_ENV = "AUTOGRADER_SCRATCH"  # the parent folder of a grading run's scratch folders


def passable(path):
    """Whether every folder on the way to ``path`` lets any user through (a
    sandbox with a uid of its own must reach its scratch folder)."""
    path = os.path.realpath(path)
    parts = path.strip("/").split("/")
    for i in range(len(parts) + 1):
        try:
            if not os.stat("/" + "/".join(parts[:i])).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def temporary_parent():
    """The temporary folder, or /tmp where the configured one is private."""
    tmp = tempfile.gettempdir()
    return tmp if passable(tmp) else "/tmp"


def scratch_folder():
    """A new scratch folder, inside the grading run's parent folder when there is one."""
    parent = os.environ.get(SCRATCH_ENV)
    if not parent or not os.path.isdir(parent):
        parent = temporary_parent()
    return tempfile.mkdtemp(prefix="grading-", dir=parent)


class ScratchRoot:
    """The parent of every scratch folder of one grading run, removed on exit
    (also when grading processes were killed and could not clean up)."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="grading-run-", dir=temporary_parent())
        os.chmod(self.path, 0o711)  # a sandbox's own uid must pass through to its folder
        self.before = os.environ.get(SCRATCH_ENV)
        os.environ[SCRATCH_ENV] = self.path
        return self

    def __exit__(self, *exc):
        if self.before is None:
            os.environ.pop(SCRATCH_ENV, None)
        else:
            os.environ[SCRATCH_ENV] = self.before
        shutil.rmtree(self.path, ignore_errors=True)


def readable_roots():
    """Paths the student's process may read: the Python installation."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr", "/lib",
             "/lib64", "/bin", "/etc/ld.so.cache", "/etc/fonts", "/dev/null", "/dev/urandom",
             os.path.dirname(os.path.realpath(sys.executable))}
    roots.update(worker_path())
    return sorted({os.path.realpath(p) for p in roots if os.path.exists(p)})


def worker_path():
    """Site-packages folders for the worker's sys.path (it runs without site,
    so no .pth file, such as an editable install's, adds the course)."""
    return [p for p in sys.path
            if p.rstrip("/").endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]
