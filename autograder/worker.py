"""The process that runs one student's code.

The grader starts it with ``python -I -c <wire.py + this file>`` so it imports
nothing from the course's files, then fences it in (see ``confine``) before
the first line of student code runs.  It answers two requests on a private
pipe: run a cell, or call a function the cells defined.  The checks that
decide the score run in the grader, never here.
"""
import os
import sys
import traceback


def confine(limits):
    """Resource limits and, where the kernel has it, a Landlock file fence."""
    import resource
    mem = limits["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    return landlock(readable=limits["readable"], writable=limits["writable"])


def landlock(readable, writable):
    """Allow reading only ``readable`` trees and writing only ``writable`` ones.

    Returns the Landlock ABI version in force, or 0 when the kernel has none
    (the grader then reports the weaker sandbox).  Also denies TCP where the
    kernel can (ABI >= 4).
    """
    import ctypes
    import platform
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"):
        return 0
    nr = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}[platform.machine()]
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(nr[0], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return 0
    EXEC, WRITE, READ_F, READ_D = 1, 2, 4, 8
    read = EXEC | READ_F | READ_D
    fs_all = (1 << 13) - 1  # every file right of ABI 1
    if abi >= 2:
        fs_all |= 1 << 13   # REFER
    if abi >= 3:
        fs_all |= 1 << 14   # TRUNCATE
    net = 3 if abi >= 4 else 0  # BIND_TCP | CONNECT_TCP, with no port allowed

    class Ruleset(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]

    attr = Ruleset(fs_all, net)
    size = ctypes.sizeof(Ruleset) if abi >= 4 else 8
    rfd = libc.syscall(nr[0], ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if rfd < 0:
        return 0
    for paths, rights in ((readable, read), (writable, fs_all)):
        for p in paths:
            try:
                fd = os.open(p, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            allowed = rights if os.path.isdir(p) else rights & (EXEC | WRITE | READ_F | (1 << 14))
            rule = PathBeneath(allowed, fd)
            libc.syscall(nr[1], rfd, 1, ctypes.byref(rule), 0)  # LANDLOCK_RULE_PATH_BENEATH
            os.close(fd)
    PR_SET_NO_NEW_PRIVS = 38
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if libc.syscall(nr[2], rfd, 0) != 0:
        return 0
    os.close(rfd)
    return abi


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
    tb = exc.__traceback__
    frames = [f for f in traceback.extract_tb(tb) if f.filename.startswith("<cell")]
    lines = traceback.format_list(frames[-limit:])
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)[-4000:]


def serve(rfd, wfd):
    import numpy as np
    store = []  # objects that could not travel as plain data (see wire.Handle)
    user = {"__name__": "__main__", "display": lambda *a, **k: None}
    sys.modules["__main__"].__dict__.update(user)
    user = sys.modules["__main__"].__dict__

    def closure(expr, env):
        code = compile(expr, "<check>", "eval")
        scope = {"np": np, **env}
        return lambda: eval(code, scope)

    while True:
        try:
            msg = recv(rfd)
        except EOFError:
            return
        reply = {"ok": True}
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
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                exc = RuntimeError(f"{type(exc).__name__} raised by your code")
            reply = {"ok": False, "error": short_traceback(exc),
                     "kind": type(exc).__name__}
        try:
            send(wfd, reply)
        except (TypeError, ValueError) as exc:
            send(wfd, {"ok": False, "kind": "TypeError",
                       "error": f"the value returned cannot be checked: {exc}"})


def main():
    import json
    rfd, wfd = int(sys.argv[1]), int(sys.argv[2])
    limits = json.loads(sys.argv[3])
    os.chdir(limits["scratch"])
    import numpy  # noqa: F401 - loaded before the fence goes up
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    abi = confine(limits)
    send(wfd, {"ok": True, "landlock": abi, "pid": os.getpid()})
    serve(rfd, wfd)


if __name__ == "__main__":
    main()
