"""The fence a student's process puts up around itself before any of its code runs.

Sent verbatim to the worker process (with ``wire.py`` and ``worker.py``), so
it imports only the standard library (and ``pyseccomp``, a ctypes binding of
the system's libseccomp, where installed).  Strongest layer first, each used
where the system has it; ``confine`` returns what is in force, and the
grader records it in results.json (``extra_data.sandbox``):

1. As root: private mount, network and IPC namespaces (no network at all,
   not even loopback; System V shared memory, semaphores and message queues
   of its own, destroyed with it), the scratch folder replaced by a small
   tmpfs (``disk_mb``, ``max_files``: filling it gives the student "No space
   left on device", never fills the grader's disk), directories of the
   Python installation that only root may traverse (``/root/.pyenv``, say)
   re-exposed through a tmpfs, and then a switch to an unprivileged user id
   of its own (chosen by the grader, one per live sandbox), so
   ``RLIMIT_NPROC`` bounds its processes and threads and it cannot signal,
   trace or read any other process.  Without the namespace privilege
   (Docker's default) the uid switch alone is used when the installation is
   readable by others.
2. Resource limits: address space, CPU time, file size, no core files,
   processes and threads (``RLIMIT_NPROC``; without the uid switch it is
   the user's current count plus the allowance, so it bounds this sandbox
   without touching the grader).  A sandbox that stays root (no uid could
   be used) drops every capability instead; the kernel does not apply
   ``RLIMIT_NPROC`` to root, so only the uid switch bounds its processes.
3. Landlock (Linux >= 5.13): read only the Python installation, write only
   the scratch folder; TCP denied (ABI >= 4); device ioctls denied
   (ABI >= 5); signals and abstract unix sockets scoped to the sandbox
   (ABI >= 6), so even without the uid switch it cannot kill the grader.
4. A seccomp filter (libseccomp, any user): no kernel object that two
   sandboxes could share.  System V IPC and POSIX message queues, kernel
   keyrings (a named keyring outlives the process), file locks and leases
   and change notifications on the files every sandbox can read (a channel
   between two processes that read the same file), io_uring, userfaultfd,
   ptrace and reading other processes' memory, BPF, perf events, new
   namespaces and mounts, and every socket but a private socketpair are
   refused with EPERM.

The grader adds one layer from outside: a memory cgroup per sandbox
(``cgroup.py``), so memory is bounded for all its processes together.

``announce`` says at the start of a grading run which layers are in force
(probed with a sandbox that runs no student code), and ``require`` refuses
to grade when one that a server must have is missing.
"""
import os

# The layers by name (for ``--require-fence``): what each one is, and whether
# a sandbox's info (``Sandbox.info``) shows it in force.
LAYERS = {
    "namespace": ("mount and network namespaces",
                  lambda i: str(i.get("isolation", "")).startswith("namespace")),
    "uid": ("a uid of its own", lambda i: str(i.get("isolation", "")).endswith("uid")),
    "tmpfs": ("a private tmpfs scratch folder", lambda i: bool(i.get("tmpfs"))),
    "ipc": ("an IPC namespace", lambda i: bool(i.get("ipc_namespace"))),
    "landlock": ("Landlock", lambda i: (i.get("landlock") or 0) >= 1),
    "scoped": ("Landlock signal scoping", lambda i: bool(i.get("scoped"))),
    "seccomp": ("a seccomp filter", lambda i: bool(i.get("seccomp"))),
    "cgroup": ("a memory cgroup", lambda i: str(i.get("memory", "")).startswith("cgroup")),
}


class FenceMissing(RuntimeError):
    """A layer the run requires is not in force on this machine."""


def probe(limits=None):
    """The fence in force for a sandbox with ``limits``: a sandbox is started
    (no student code runs in it) and its info returned.  In the grader only."""
    from .sandbox import Limits, Sandbox
    with Sandbox(limits or Limits()) as sb:
        return dict(sb.info)


def describe(info):
    """One line: the layers in force and those missing."""
    on = [n for n, (_, test) in LAYERS.items() if test(info)]
    off = [n for n in LAYERS if n not in on]
    return (f"fence: {', '.join(on) or 'none'} in force (isolation {info.get('isolation')}, "
            f"Landlock ABI {info.get('landlock') or 0}, memory bounded by "
            f"{info.get('memory')}); missing: {', '.join(off) or 'none'}")


def announce(limits=None, stream=None):
    """Print ``describe`` of a probe to stderr (the start of a grading run); returns the info."""
    import sys
    info = probe(limits)
    print(describe(info), file=stream or sys.stderr)
    return info


def require(layers, info):
    """Raise FenceMissing unless every layer named in ``layers`` (names of
    LAYERS, or "all") is in force in ``info``."""
    names = list(LAYERS) if "all" in layers else list(layers)
    unknown = [n for n in names if n not in LAYERS]
    if unknown:
        raise FenceMissing(f"unknown fence layer(s) {', '.join(unknown)}; "
                           f"known: {', '.join(LAYERS)}, all")
    missing = [n for n in names if not LAYERS[n][1](info)]
    if missing:
        raise FenceMissing("required fence layer(s) not in force on this machine: "
                           + ", ".join(f"{n} ({LAYERS[n][0]})" for n in missing)
                           + "; refusing to grade")

def confine(limits):
    """Apply every layer available; returns what is in force (for the report)."""
    import resource
    info = {"isolation": "none", "tmpfs": False, "landlock": 0, "scoped": False,
            "ipc_namespace": False, "seccomp": False}
    tasks = limits["max_tasks"]
    if os.geteuid() == 0 and limits.get("uid") is not None:
        info.update(isolate(limits))
    if not info["isolation"].endswith("uid"):
        # Same user as the grader: allow this many on top of what runs already.
        tasks += count_tasks(os.getuid())
    if os.geteuid() == 0:
        drop_capabilities()  # still root (no uid to switch to): root without its powers

    def lower(which, soft, hard=None):
        """Set a limit, never above the hard limit the grader already has."""
        _, cur = resource.getrlimit(which)
        hard = soft if hard is None else hard
        if cur != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur), min(hard, cur)
        resource.setrlimit(which, (soft, hard))

    lower(resource.RLIMIT_NPROC, tasks)
    lower(resource.RLIMIT_AS, limits["memory_bytes"])
    lower(resource.RLIMIT_FSIZE, limits["file_bytes"])
    lower(resource.RLIMIT_CORE, 0)
    lower(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 5)
    lower(resource.RLIMIT_NOFILE, 256)
    abi, scoped = landlock(readable=limits["readable"], writable=limits["writable"])
    info.update(landlock=abi, scoped=scoped, seccomp=seccomp_filter())
    return info


def drop_capabilities():
    """Empty every capability set, so a sandbox left running as root cannot
    load kernel modules, reboot, change the clock, mount, or bypass file
    permissions; Landlock fences the rest."""
    import ctypes
    import platform
    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP = 24
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails harmlessly past the last cap

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    capset = {"x86_64": 126, "aarch64": 91}.get(platform.machine())
    if capset is not None:
        data = (Data * 2)()
        libc.syscall(capset, ctypes.byref(Header(0x20080522, 0)), data)


def count_tasks(uid):
    """Threads of every process whose real uid is ``uid`` (RLIMIT_NPROC counts those)."""
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                n += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return n


def isolate(limits):
    """Namespaces and a tmpfs scratch folder where the kernel lets us (root
    with CAP_SYS_ADMIN), then the unprivileged uid where the Python
    installation is readable by it (with CAP_SETUID, e.g. in Docker too).

    Returns {"isolation": "namespace+uid" | "uid" | "namespace" | "none",
    "tmpfs": whether the scratch folder is a private tmpfs,
    "ipc_namespace": whether System V IPC is private}.
    """
    import ctypes
    import resource
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC = 0x00020000, 0x40000000, 0x08000000
    MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18

    def mount(src, target, fstype, flags, data):
        enc = (lambda s: None if s is None else s.encode())
        if libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
            raise OSError(ctypes.get_errno(), f"mount {target}")

    uid = gid = limits["uid"]
    namespace = tmpfs = False
    ipc = libc.unshare(CLONE_NEWIPC) == 0
    if libc.unshare(CLONE_NEWNS | CLONE_NEWNET) == 0:
        namespace = True
        try:
            mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            mount("tmpfs", limits["scratch"], "tmpfs", MS_NOSUID | MS_NODEV,
                  f"size={limits['disk_kb']}k,nr_inodes={limits['max_files']},"
                  f"mode=0700,uid={uid},gid={gid}")
            tmpfs = True
        except OSError:
            pass
    try:
        readable = expose_for_others(limits["readable"], mount if namespace else None)
    except OSError:
        readable = False
    if not readable:
        return {"isolation": "namespace" if namespace else "none", "tmpfs": tmpfs,
                "ipc_namespace": ipc}
    if not tmpfs:
        os.chown(limits["scratch"], uid, gid)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_tasks"],) * 2)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    return {"isolation": "namespace+uid" if namespace else "uid", "tmpfs": tmpfs,
            "ipc_namespace": ipc}


def expose_for_others(paths, mount):
    """Make every path of ``paths`` reachable by an unprivileged user.

    A directory on the way that others may not traverse (mode 0700, like
    /root) is covered, in this mount namespace only, by a tmpfs holding
    just the needed paths, bind-mounted (``mount`` is None without a
    namespace: then such a directory means False).  Returns False when a
    needed path is not readable by others (the uid switch would break it).
    """
    import stat
    blocked = {}
    for p in paths:
        p = os.path.realpath(p)
        if not os.path.exists(p):
            continue
        mode = os.stat(p).st_mode
        need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            if mode & need != need:
                return False
        parts = p.strip("/").split("/")
        for i in range(1, len(parts)):
            a = "/" + "/".join(parts[:i])
            if not os.stat(a).st_mode & stat.S_IXOTH:
                blocked.setdefault(a, []).append(p)
                break
    if blocked and mount is None:
        return False
    for a, inside in sorted(blocked.items()):
        fds = [(p, os.open(p, os.O_PATH | os.O_CLOEXEC)) for p in inside]
        mount("tmpfs", a, "tmpfs", 2 | 4, "size=64k,mode=0755")
        old = os.umask(0o022)
        try:
            for p, fd in fds:
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.makedirs(p, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(p), exist_ok=True)
                    open(p, "a").close()
                mount(f"/proc/self/fd/{fd}", p, None, 4096 | 16384, None)
                os.close(fd)
        finally:
            os.umask(old)
    return True


def landlock(readable, writable):
    """Allow reading only ``readable`` trees and writing only ``writable`` ones.

    Returns (Landlock ABI in force or 0 when the kernel has none, whether
    signals and abstract unix sockets are scoped).
    """
    import ctypes
    import platform
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return 0, False
    create, add_rule, restrict = 444, 445, 446  # same numbers on x86_64 and aarch64
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return 0, False
    EXEC, WRITE, READ_F, READ_D, TRUNCATE, IOCTL_DEV = 1, 2, 4, 8, 1 << 14, 1 << 15
    read = EXEC | READ_F | READ_D
    fs_all = (1 << 13) - 1  # every file right of ABI 1
    if abi >= 2:
        fs_all |= 1 << 13   # REFER
    if abi >= 3:
        fs_all |= TRUNCATE
    if abi >= 5:
        fs_all |= IOCTL_DEV
    net = 3 if abi >= 4 else 0     # BIND_TCP | CONNECT_TCP, with no port allowed
    scoped = 3 if abi >= 6 else 0  # ABSTRACT_UNIX_SOCKET | SIGNAL

    class Ruleset(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64),
                    ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]

    attr = Ruleset(fs_all, net, scoped)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    rfd = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if rfd < 0:
        return 0, False
    file_rights = EXEC | WRITE | READ_F | TRUNCATE | IOCTL_DEV
    for paths, rights in ((readable, read), (writable, fs_all)):
        for p in paths:
            try:
                fd = os.open(p, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            allowed = rights if os.path.isdir(p) else rights & file_rights
            rule = PathBeneath(allowed & fs_all, fd)
            libc.syscall(add_rule, rfd, 1, ctypes.byref(rule), 0)  # LANDLOCK_RULE_PATH_BENEATH
            os.close(fd)
    PR_SET_NO_NEW_PRIVS = 38
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if libc.syscall(restrict, rfd, 0) != 0:
        return 0, False
    os.close(rfd)
    return abi, bool(scoped)


# System calls a student's process never needs, each a way to reach a kernel
# object another process can see (or to weaken the fence).
DENIED_SYSCALLS = (
    "shmget", "shmat", "shmctl", "semget", "semop", "semtimedop", "semctl",
    "msgget", "msgsnd", "msgrcv", "msgctl",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    "add_key", "request_key", "keyctl",
    "flock", "inotify_init", "inotify_init1", "inotify_add_watch",
    "fanotify_init", "fanotify_mark",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "bpf", "perf_event_open", "unshare", "setns", "mount", "umount2", "pivot_root",
    "chroot", "open_by_handle_at", "name_to_handle_at",
    "bind", "connect", "listen", "accept", "accept4",
)
# fcntl commands that lock, lease or watch a file: F_GETLK, F_SETLK, F_SETLKW,
# F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW, F_SETLEASE, F_GETLEASE, F_NOTIFY.
DENIED_FCNTL = (5, 6, 7, 36, 37, 38, 1024, 1025, 1026)
# clone flags that make new namespaces (a user namespace would let it mount
# and unshare again); clone3 passes its flags in memory seccomp cannot read,
# so it is refused with ENOSYS and the C library falls back to clone.
NEW_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000,
                  0x20000000, 0x40000000, 0x00000080)
AF_UNIX = 1


def seccomp_filter():
    """Load the filter described in the module docstring; True when in force."""
    import errno
    try:
        import pyseccomp as sc
        f = sc.SyscallFilter(sc.ALLOW)
    except Exception:  # no binding or no libseccomp (macOS, minimal images)
        return False
    eperm = sc.ERRNO(errno.EPERM)

    def deny(action, name, *args):
        try:
            f.add_rule(action, name, *args)
        except Exception:  # a call this architecture does not have
            pass

    for name in DENIED_SYSCALLS:
        deny(eperm, name)
    for cmd in DENIED_FCNTL:
        deny(eperm, "fcntl", sc.Arg(1, sc.EQ, cmd))
    for flag in NEW_NAMESPACES:
        deny(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    deny(sc.ERRNO(errno.ENOSYS), "clone3")
    deny(eperm, "socket", sc.Arg(0, sc.NE, AF_UNIX))
    try:
        f.load()
    except Exception:
        return False
    return True
