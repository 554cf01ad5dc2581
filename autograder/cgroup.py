"""One memory budget for all of a sandbox's processes together.

``RLIMIT_AS`` bounds one process: a sandbox that forks N children could use
N times its limit.  Where the kernel lets the grader make a memory cgroup,
every sandbox gets one of its own, made by the grader (the student's code
never can: the fence denies mounts and it runs unprivileged), and its
processes are charged together:

- cgroup v2: ``memory.max`` = the limit, ``memory.swap.max`` = 0 (no
  escape into swap), ``memory.oom.group`` = 1 (going over kills the whole
  sandbox at once); ``memory.events`` counts the kills;
- cgroup v1: ``memory.limit_in_bytes`` = the limit and, where swap is
  accounted, ``memory.memsw.limit_in_bytes`` = the same (no swap beyond
  it); ``memory.oom_control`` counts the kills.

The grader puts the worker into the cgroup before it sends the settings,
so the student's first line already runs inside, and every process it
starts inherits it.  Going over ends the sandbox with the event
``MEMORY_EVENT``; the cgroup is removed when the sandbox closes (its
processes killed first), and one a crashed grader left behind is removed by
``sweep``.

Where no cgroup can be made (no cgroup file system, no write access, a
cgroup v2 parent without the memory controller delegated), the budget is
split instead: at most ``tasks`` processes and threads (``RLIMIT_NPROC``),
each with an address space of ``limit / tasks``, with every task given at
least ``MIN_PROCESS_MB`` (enough for Python with NumPy), so a small limit
means fewer tasks, down to one.  That bound holds only where
``RLIMIT_NPROC`` does: not for a sandbox left running as root.
"""
import itertools
import os
import time

MIN_PROCESS_MB = 512  # Python with NumPy and room for a student's arrays
PREFIX = "grading-"
_counter = itertools.count()


def memory_event(limit_mb):
    return (f"Your notebook's processes together used more than the memory limit "
            f"({limit_mb} MB for all of them), so they were stopped.")


def split_budget(limit_mb, max_tasks):
    """(tasks, MB per task) when only rlimits bound memory: together within the limit."""
    tasks = max(1, min(max_tasks, limit_mb // MIN_PROCESS_MB))
    return tasks, limit_mb // tasks


def memory_layer(cg, isolation):
    """What bounds the sum of a sandbox's processes (for its report): its
    cgroup, or RLIMIT_NPROC x RLIMIT_AS ("split"), which the kernel does not
    apply to a sandbox left running as root ("per-process": no bound)."""
    if cg is not None:
        return cg.layer
    return "split" if os.geteuid() != 0 or str(isolation).endswith("uid") else "per-process"


def _own_cgroups(cgroup_text):
    """{controller or "" (v2): path} from /proc/self/cgroup's text."""
    out = {}
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for c in parts[1].split(",") if parts[1] else [""]:
                out[c] = parts[2]
    return out


def find_parent(mountinfo_text, cgroup_text):
    """Where a sandbox's memory cgroup would go: (version, folder), or None.

    The folder is the grader's own cgroup in the hierarchy that has the
    memory controller (v1), or in the unified hierarchy (v2; usable only
    if its ``cgroup.subtree_control`` offers ``memory``, see ``_v2_ready``).
    """
    own = _own_cgroups(cgroup_text)
    found = {}
    for line in mountinfo_text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, mount_point, fstype, options = fields[3], fields[4], tail[0], tail[2].split(",")
        if fstype == "cgroup" and "memory" in options:
            version, path = 1, own.get("memory")
        elif fstype == "cgroup2":
            version, path = 2, own.get("")
        else:
            continue
        if path is None:
            continue
        if version == 2 and os.path.basename(path) == LEAF:
            path = os.path.dirname(path)  # moved there by _v2_ready: sandboxes go beside it
        # The mount shows the hierarchy from ``root`` on (a container's view).
        rel = os.path.relpath(path, root) if path.startswith(root) else None
        if rel is None or rel.startswith(".."):
            continue
        found.setdefault(version, os.path.normpath(os.path.join(mount_point, rel)))
    for version in (1, 2):  # v1 where it has the controller: a v2 mount beside it has none
        if version in found:
            return version, found[version]
    return None


def _read(path):
    with open(path) as f:
        return f.read()


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


LEAF = "autograder-leaf"  # v2: where the grader's own processes move (see _v2_ready)


def _v2_ready(parent):
    """Whether children of ``parent`` can get ``memory.max``: the controller
    is enabled for them.  If it is not, it is enabled, which cgroup v2 allows
    only in a cgroup without processes of its own: so the processes of
    ``parent`` (the grader's, in a cgroup delegated to it, e.g. by
    ``systemd-run --scope -p Delegate=yes``) first move to a leaf ``LEAF``."""
    control = os.path.join(parent, "cgroup.subtree_control")
    try:
        if "memory" in _read(control).split():
            return True
        if "memory" not in _read(os.path.join(parent, "cgroup.controllers")).split():
            return False  # not delegated to us: move nothing
        leaf = os.path.join(parent, LEAF)
        os.makedirs(leaf, exist_ok=True)
        for pid in _read(os.path.join(parent, "cgroup.procs")).split():
            try:
                _write(os.path.join(leaf, "cgroup.procs"), pid)
            except OSError:  # gone, or a kernel thread
                pass
        _write(control, "+memory")
        return "memory" in _read(control).split()
    except OSError:  # not delegated to us, or not writable
        return False


_PARENT = []  # found once per process: [(version, folder) or None]


def parent():
    if not _PARENT:
        try:
            found = find_parent(_read("/proc/self/mountinfo"), _read("/proc/self/cgroup"))
        except OSError:
            found = None
        if found and found[0] == 2 and not _v2_ready(found[1]):
            found = None
        if found and not os.access(found[1], os.W_OK):
            found = None
        _PARENT.append(found)
    return _PARENT[0]


class MemoryCgroup:
    """A sandbox's memory cgroup; ``None`` from ``create`` where none can be had."""

    def __init__(self, version, path, limit_bytes):
        self.version, self.path, self.limit_bytes = version, path, limit_bytes

    @classmethod
    def create(cls, limit_mb, where=None):
        """A new cgroup limited to ``limit_mb`` under ``where`` = (version,
        folder) (default: ``parent()``); None when the kernel does not allow it."""
        where = where or parent()
        if where is None:
            return None
        version, folder = where
        name = f"{PREFIX}{os.getpid()}-{next(_counter)}-{time.monotonic_ns()}"
        path = os.path.join(folder, name)
        limit = int(limit_mb) * 2**20
        try:
            os.mkdir(path, 0o755)
        except OSError:
            return None
        cg = cls(version, path, limit)
        try:
            if version == 2:
                _write(cg.file("memory.max"), str(limit))
                cg._optional("memory.swap.max", "0")
                cg._optional("memory.oom.group", "1")
            else:
                _write(cg.file("memory.limit_in_bytes"), str(limit))
                cg._optional("memory.memsw.limit_in_bytes", str(limit))  # only with swap accounting
            if not cg.enforced():
                raise OSError("the limit did not take")
        except OSError:
            cg.remove()
            return None
        return cg

    def file(self, name):
        return os.path.join(self.path, name)

    def _optional(self, name, value):
        try:
            _write(self.file(name), value)
        except OSError:
            pass

    def enforced(self):
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        try:
            return int(_read(self.file(name)).split()[0]) <= self.limit_bytes
        except (OSError, ValueError, IndexError):
            return False

    @property
    def layer(self):
        return f"cgroup{self.version}"

    def add(self, pid):
        """Move ``pid`` (the worker, before it runs any student code) in."""
        _write(self.file("cgroup.procs"), str(pid))

    def oom_kills(self):
        """How many of its processes the kernel killed for going over the limit."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            fields = dict(line.split()[:2] for line in _read(self.file(name)).splitlines()
                          if len(line.split()) >= 2)
            return int(fields.get("oom_kill", 0)) + int(fields.get("oom_group_kill", 0))
        except (OSError, ValueError):
            return 0

    def pids(self):
        try:
            return [int(p) for p in _read(self.file("cgroup.procs")).split()]
        except (OSError, ValueError):
            return []

    def kill(self):
        """SIGKILL every process in it (v2: all at once with ``cgroup.kill``)."""
        import signal
        if self.version == 2:
            try:
                _write(self.file("cgroup.kill"), "1")
                return
            except OSError:
                pass
        for _ in range(5):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def remove(self, wait=2.0):
        """Kill what is left and remove the folder (a cgroup goes only when empty)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                os.rmdir(self.path)
                return True
            except FileNotFoundError:
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
                self.kill()
                time.sleep(0.01)


def sweep(where=None):
    """Remove the cgroups of graders that are gone (a killed grading process)."""
    where = where or parent()
    if where is None:
        return
    try:
        names = os.listdir(where[1])
    except OSError:
        return
    for name in names:
        if not name.startswith(PREFIX):
            continue
        try:
            pid = int(name[len(PREFIX):].split("-")[0])
            os.kill(pid, 0)
            continue  # its grader lives: the cgroup is in use
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        MemoryCgroup(where[0], os.path.join(where[1], name), 0).remove(wait=0.5)
