"""The process that runs one student's code.

The grader starts it with ``python -I -S -c <bootstrap>`` (``sandbox._BOOT``):
isolated mode, no ``site`` (so no ``.pth`` file, such as an editable
install's path hook, can put the course's folders on ``sys.path``).  The
bootstrap loads ``wire.py``, ``fence.py`` and this file, each as a module of
its own (from its file, before the fence goes up) whose builtins are a
private copy, registered nowhere, so nothing the student's cells define,
delete or patch by name reaches the code that talks to the grader; it
hands this module the other two as ``wire`` and ``fence``.  The student's cells run in a fresh
``__main__``.

Its settings arrive as the first message on the private pipe (never on the
command line, which any process may read).  Before the first line of
student code it fences itself in (``fence.confine``) and seeds every global
source of randomness a student's code may use without asking: Python's
``random``, NumPy's legacy global state, the entropy of every unseeded NumPy
generator (``default_rng()``, ``PCG64()``, ``SeedSequence()``) and
``os.urandom``, from a seed the grader derives from the grading seed (the
grading seed itself never reaches this process).  Code that reads the
kernel's entropy itself (``/dev/urandom``, ``getrandom``) gets the grades its
own randomness gives.

It then answers two requests on the pipe: run a cell, or call a function the
cells defined.  A call's warnings are recorded (whatever the student's
filters say) and sent back with its result, so the grader can raise them
again under the filters of the check that made the call, as a notebook
would.  Builtins a cell deletes or replaces are put back after each request
(the loop itself needs them).  The checks that decide the score run in the
grader, never here.  A process the student forks that returns into the
request loop exits at once instead of answering.
"""
import builtins
import os
import sys
import traceback

try:  # given by the bootstrap (sandbox._BOOT)
    wire, fence  # noqa: B018
except NameError:  # imported as part of the package (tools, tests)
    from autograder import fence, wire

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
    import numpy.random.bit_generator as bit_generator
    random.seed(seed)
    np.random.seed(seed % 2**32)
    stream = random.Random(seed + 1)  # private: the student's random.seed() leaves it alone
    # Every NumPy generator made without a seed takes its entropy from here.
    bit_generator.randbits = stream.getrandbits
    os.urandom = lambda n: stream.getrandbits(8 * n).to_bytes(n, "little") if n > 0 else b""


def serve(rfd, wfd, info):
    import types
    import warnings

    import numpy as np
    catch_warnings, always = warnings.catch_warnings, warnings.simplefilter
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

    send, recv, dumps = wire.send, wire.recv, wire.dumps
    send(wfd, dict(info, ok=True, seq=0, pid=_PID))
    while True:
        try:
            repair_builtins()
            msg = recv(rfd)
        except (EOFError, OSError, ValueError):
            return
        reply = {"ok": True, "seq": msg.get("seq")}
        caught = ()
        try:
            if msg["op"] == "exec":
                code = compile(without_magics(msg["source"]), msg["name"], "exec")
                exec(code, user)
            elif msg["op"] == "call":
                dec = wire.Decoder(store=store, closure=closure)
                args = dec(msg["args"])
                kwargs = dec(msg["kwargs"])
                fn = user.get(msg["name"])
                if fn is None:
                    raise NameError(f"{msg['name']} is not defined in your notebook")
                with catch_warnings(record=True) as caught:
                    always("always")
                    result = fn(*args, **kwargs)
                enc = wire.Encoder(store=store)
                reply["result"] = enc(result)
                # The arguments after the call (those the grader asks for),
                # so it sees in-place changes.
                back = msg.get("give_back")
                if back is None:
                    reply["args"] = wire.Encoder(store=store)([args, kwargs])
                else:
                    reply["args"] = wire.Encoder(store=store)(
                        [[a if i in back[0] else None for i, a in enumerate(args)],
                         {k: v for k, v in kwargs.items() if k in back[1]}])
        except BaseException as exc:  # noqa: B036 - everything is reported back
            if isinstance(exc, (SystemExit, KeyboardInterrupt, GeneratorExit)):
                exc = RuntimeError(f"{type(exc).__name__} raised by your code")
            reply = {"ok": False, "seq": msg.get("seq"), "error": short_traceback(exc),
                     "kind": type(exc).__name__}
        if msg.get("op") == "call":
            reply["warnings"] = recorded(caught)
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


def recorded(caught, limit=20):
    """The warnings of a call as [category name, message] pairs."""
    out = []
    try:
        for w in list(caught)[:limit]:
            out.append([type.__getattribute__(w.category, "__name__")[:100], str(w.message)[:1000]])
    except BaseException:  # noqa: B036 - a warning whose message cannot be shown
        out.append(["UserWarning", "(a warning whose message could not be shown)"])
    return out


def main(argv):
    rfd, wfd = int(argv[1]), int(argv[2])
    try:
        limits = wire.recv(rfd)  # the settings come on the pipe, never on the command line
        import numpy  # noqa: F401 - loaded before the fence goes up
        try:
            import pyseccomp  # noqa: F401 - it finds libseccomp through ldconfig
        except Exception:
            pass
        info = fence.confine(limits)
        os.chdir(limits["scratch"])
        seed_everything(limits["sandbox_seed"])
    except BaseException:  # noqa: B036 - no student code has run: the grader's problem
        wire.send(wfd, {"ok": False, "seq": 0, "setup_error": traceback.format_exc()[-3000:]})
        raise
    serve(rfd, wfd, info)
