"""The process that runs one student's code.

The grader starts it with ``python -I -S -c <bootstrap>``: isolated mode, no
``site`` (so no ``.pth`` file, such as an editable install's path hook, can
put the course's folders on ``sys.path``), and this file plus ``wire.py``
executed in a private module whose builtins are a private copy, so nothing
the student's cells define, delete or patch by name reaches the code that
talks to the grader.  The student's cells run in a fresh ``__main__``.

Before the first line of student code the worker fences itself in
(``confine``), strongest first, each layer used where the system has it:

1. As root: a private mount and network namespace (no network at all, not
   even loopback: no TCP, UDP or socket to another process), the scratch
   folder replaced by a small tmpfs (``disk_mb``, ``max_files``: filling it
   gives the student "No space left on device", never fills the grader's
   disk), directories of the Python installation that only root may
   traverse (``/root/.pyenv``, say) re-exposed through a tmpfs, and then a
   switch to an unprivileged user id of its own (chosen by the grader, one
   per live sandbox), so ``RLIMIT_NPROC`` bounds its processes and threads
   and it cannot signal, trace or read any other process.  Without the
   namespace privilege (Docker's default) the uid switch alone is used
   when the installation is readable by others.
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

It then answers two requests on a private pipe: run a cell, or call a
function the cells defined.  Builtins a cell deletes or replaces are put
back after each request (the loop itself needs them).  The checks that
decide the score run in the grader, never here.  A process the student
forks that returns into the request loop exits at once instead of
answering.
"""
import builtins
import os
import sys
import traceback

_PID = os.getpid()
_BUILTINS = dict(builtins.__dict__)  # as they were before any student code


def repair_builtins():
    """Put back builtins the student deleted or replaced.

    The request loop (and the json and os code it uses) needs ``len``,
    ``isinstance`` and friends; a cell that deletes them would otherwise
    break the channel, not just the student's own code.  Names the student
    added stay.
    """
    d = builtins.__dict__
    for k, v in _BUILTINS.items():
        if d.get(k) is not v:
            d[k] = v


# ----------------------------------------------------------------------------
# Fencing in


def confine(limits):
    """Apply every layer available; returns what is in force (for the report)."""
    import resource
    info = {"isolation": "none", "tmpfs": False, "landlock": 0, "scoped": False}
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
    info.update(landlock=abi, scoped=scoped)
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
    "tmpfs": whether the scratch folder is a private tmpfs}.
    """
    import ctypes
    import resource
    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
    MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18

    def mount(src, target, fstype, flags, data):
        enc = (lambda s: None if s is None else s.encode())
        if libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
            raise OSError(ctypes.get_errno(), f"mount {target}")

    uid = gid = limits["uid"]
    namespace = tmpfs = False
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
        return {"isolation": "namespace" if namespace else "none", "tmpfs": tmpfs}
    if not tmpfs:
        os.chown(limits["scratch"], uid, gid)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_tasks"],) * 2)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    return {"isolation": "namespace+uid" if namespace else "uid", "tmpfs": tmpfs}


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


# ----------------------------------------------------------------------------
# Running cells


def without_magics(source):
    """Drop IPython magics and shell escapes: no shell runs in grading."""
    if source.lstrip().startswith("%%"):
        return ""
    lines = []
    for line in source.splitlines():
        s = line.lstrip()
        if s.startswith(("%", "!")):
            line = line[: len(line) - len(s)] + "pass"
        lines.append(line)
    return "\n".join(lines)


def short_traceback(exc, limit=12):
    """The student's part of a traceback (frames from their cells only)."""
    try:
        tb = exc.__traceback__
        frames = [f for f in traceback.extract_tb(tb) if f.filename.startswith("<cell")]
        lines = traceback.format_list(frames[-limit:])
        lines += traceback.format_exception_only(type(exc), exc)
        return "".join(lines)[-4000:]
    except BaseException:  # noqa: B036 - an exception whose str() raises, say
        return f"{type(exc).__name__} (its message could not be shown)"


def seed_everything(seed):
    """Unseeded randomness in student code grades the same every time."""
    import random

    import numpy as np
    random.seed(seed)
    np.random.seed(seed)
    default_rng, calls = np.random.default_rng, [0]

    def deterministic_default_rng(seed_=None):
        if seed_ is None:
            calls[0] += 1
            seed_ = [seed, calls[0]]
        return default_rng(seed_)

    np.random.default_rng = deterministic_default_rng


def serve(rfd, wfd, info):
    import types

    import numpy as np
    store = []  # objects that could not travel as plain data (see wire.Handle)
    main = types.ModuleType("__main__")
    # The real builtins module, as in a notebook (exec would otherwise hand
    # the cells this module's private copy).
    main.__dict__["__builtins__"] = builtins
    main.__dict__["display"] = lambda *a, **k: None
    sys.modules["__main__"] = main
    user = main.__dict__
    scratch_is_tmpfs = info["tmpfs"]
    getpid, statvfs, exit_now = os.getpid, os.statvfs, os._exit

    def closure(expr, env):
        code = compile(expr, "<check>", "eval")
        scope = {"np": np, **env}
        return lambda: eval(code, scope)

    send(wfd, dict(info, ok=True, seq=0, pid=_PID))
    while True:
        try:
            repair_builtins()
            msg = recv(rfd)
        except (EOFError, OSError, ValueError):
            return
        reply = {"ok": True, "seq": msg.get("seq")}
        try:
            if msg["op"] == "exec":
                code = compile(without_magics(msg["source"]), msg["name"], "exec")
                exec(code, user)
            elif msg["op"] == "call":
                dec = Decoder(store=store, closure=closure)
                args = dec(msg["args"])
                kwargs = dec(msg["kwargs"])
                fn = user.get(msg["name"])
                if fn is None:
                    raise NameError(f"{msg['name']} is not defined in your notebook")
                result = fn(*args, **kwargs)
                enc = Encoder(store=store)
                reply["result"] = enc(result)
                # The arguments after the call, so the grader sees in-place changes.
                reply["args"] = Encoder(store=store)([args, kwargs])
        except BaseException as exc:  # noqa: B036 - everything is reported back
            if isinstance(exc, (SystemExit, KeyboardInterrupt, GeneratorExit)):
                exc = RuntimeError(f"{type(exc).__name__} raised by your code")
            reply = {"ok": False, "seq": msg.get("seq"), "error": short_traceback(exc),
                     "kind": type(exc).__name__}
        if getpid() != _PID:
            exit_now(0)  # a process the student forked: only the worker answers
        repair_builtins()
        if scratch_is_tmpfs:
            try:
                st = statvfs(".")
                if st.f_bavail * st.f_frsize < 2**20 or st.f_favail < 8:
                    reply["scratch_full"] = True
            except OSError:
                pass
        try:
            data = dumps(reply)
        except (TypeError, ValueError) as exc:
            data = dumps({"ok": False, "seq": msg.get("seq"), "kind": "TypeError",
                          "error": f"the value returned cannot be checked: {exc}"})
        send(wfd, None, data)


def main(argv):
    import json
    rfd, wfd = int(argv[1]), int(argv[2])
    limits = json.loads(argv[3])
    import numpy  # noqa: F401 - loaded before the fence goes up
    info = confine(limits)
    os.chdir(limits["scratch"])
    seed_everything(limits["seed"])
    serve(rfd, wfd, info)
