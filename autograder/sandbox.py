"""Runs student code in a fenced process and talks to it from the grader.

The grader (trusted) never executes student code.  A ``Sandbox`` is a fresh
Python process (``fence.py`` is the fence it puts up before any student code
runs; ``worker.py`` the loop that answers).  From the outside the grader adds
what a process cannot enforce on itself:

- a time limit on every request, in time charged to the student
  (``processes.StudentClock``: what the code would take on an idle machine),
  covering the whole reply (a process that sends half a message and stalls
  is stopped like one that loops), and a deadline on every write to it (a
  process that stops reading cannot block the grader);
- one memory budget for all its processes together (``cgroup.py``: a memory
  cgroup of its own, or else fewer processes sharing the limit);
- an output cap (kept for the instructor) and a flood limit (stopped);
- outside a tmpfs scratch folder, a watcher that stops a process whose
  folder grows past ``disk_mb`` or ``max_files``;
- the kill (``processes.kill_tree``).

Every way the process can fail is a ``StudentCrash`` or ``StudentError`` with
a sentence for the feedback in ``events``; nothing it sends can raise
anything else in the grader, and every string it sends is cleaned
(``wire.clean``) before anything else sees it.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import wire
from .cgroup import MemoryCgroup, memory_event, memory_layer, split_budget
from .model import Limits  # noqa: F401 - what a Sandbox takes
from .processes import (StudentClock, UidSlot, kill_tree, readable_roots, scratch_folder, spawn,
                        worker_path)

_HERE = Path(__file__).resolve().parent
# The worker's modules, each loaded from its own file into a module of its own
# with a private copy of the builtins, before the fence goes up (worker.py's
# docstring); the student's cells get a fresh __main__ (see worker.serve).
_BOOT = ("import builtins, json, sys, types\n"
         "sys.path.extend(json.loads(sys.argv[3]))\n"
         "def load(name, path, **given):\n"
         "    m = types.ModuleType(name)\n"
         "    m.__file__ = path\n"
         "    m.__dict__['__builtins__'] = dict(builtins.__dict__)\n"
         "    m.__dict__.update(given)\n"
         "    with open(path, encoding='utf-8') as f:\n"
         "        exec(compile(f.read(), path, 'exec'), m.__dict__)\n"
         "    return m\n"
         f"w = load('_grading_wire', {str(_HERE / 'wire.py')!r})\n"
         f"f = load('_grading_fence', {str(_HERE / 'fence.py')!r})\n"
         f"m = load('_grading_worker', {str(_HERE / 'worker.py')!r}, wire=w, fence=f)\n"
         "del builtins, json, types, load, w, f\n"
         "m.main(sys.argv)\n")

START_SECONDS = 60.0  # charged seconds a process may take to start and fence itself in
WALL_FACTOR, WALL_EXTRA = 10.0, 60.0  # a request also stops after 10 x its limit + 60 s of wall time
SEND_SECONDS = 10.0   # a process that does not read a request within this is stopped
FENCE_KEYS = ("landlock", "scoped", "isolation", "tmpfs", "ipc_namespace", "seccomp")


class StudentCrash(Exception):
    """The student's process stopped (time limit, memory, a signal, ...);
    ``timed_out`` when it was the time limit."""

    def __init__(self, text, timed_out=False):
        super().__init__(text)
        self.timed_out = timed_out


class SandboxFailed(RuntimeError):
    """The grader could not set a sandbox up (no student code had run)."""


class StudentError(Exception):
    """The student's code raised; ``args[0]`` is their traceback."""

    def __init__(self, text, kind="Exception", warnings=()):
        super().__init__(text)
        self.kind = kind
        self.warnings = list(warnings)


class Sandbox:
    """One student process.  Use as a context manager.

    seed: the sandbox's own seed for the global random sources (derived from
    the grading seed by the caller; the grading seed never enters).
    """

    def __init__(self, limits, seed=0):
        self.limits = limits
        self.seed = seed
        self.token = f"{os.getpid()}-{id(self)}-{time.monotonic_ns()}"  # names it in Handles
        self.scratch = scratch_folder()
        self.output = bytearray()
        self.output_total = 0
        self.events = []  # what went wrong, in words for the feedback
        self.proc = None
        self.slot = None
        self.clock = None
        self.info = {"landlock": 0, "scoped": False, "isolation": "none", "tmpfs": False,
                     "ipc_namespace": False, "seccomp": False, "memory": "per-process"}
        self.memory = None  # its memory cgroup (cgroup.py), where the kernel offers one
        self.seq = 0
        self.charged = 0.0  # seconds charged to this process so far
        self._closed = threading.Event()

    @property
    def landlock(self):
        return self.info.get("landlock", 0)

    # -- life cycle ---------------------------------------------------------

    def start(self):
        try:
            return self._start()
        except BaseException:
            self.close()  # nothing it set up outlives it: uid, cgroup, scratch folder
            raise

    def _start(self):
        lim = self.limits
        if os.geteuid() == 0 and lim.isolation == "auto":
            try:
                self.slot = UidSlot()
            except (OSError, RuntimeError):
                self.slot = None  # weaker, and reported as such (isolation "none")
            self.memory = MemoryCgroup.create(lim.memory_mb)
        r_child, w_parent = os.pipe()
        r_parent, w_child = os.pipe()
        env = {
            "PATH": "/usr/bin:/bin", "HOME": self.scratch, "TMPDIR": self.scratch,
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": self.scratch,
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": str(int(self.seed) % 4294967295),
            "LANG": "C.UTF-8",
        }
        self.proc = spawn(
            [sys.executable, "-I", "-S", "-u", "-c", _BOOT,
             str(r_child), str(w_child), json.dumps(worker_path())],
            pass_fds=(r_child, w_child), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=self.scratch, env=env, start_new_session=True)
        os.close(r_child)
        os.close(w_child)
        self.rfd, self.wfd = r_parent, w_parent
        if self.memory is not None:  # in before the settings, so before any student code
            self.memory.add(self.proc.pid)
        tasks, task_mb = ((lim.max_tasks, lim.memory_mb) if self.memory
                          else split_budget(lim.memory_mb, lim.max_tasks))
        settings = {
            "scratch": self.scratch,
            "sandbox_seed": int(self.seed),
            "uid": self.slot.uid if self.slot else None,
            "memory_bytes": int(task_mb) * 2**20,
            "file_bytes": int(lim.file_mb) * 2**20,
            "disk_kb": int(lim.disk_mb) * 1024,
            "max_files": int(lim.max_files),
            "max_tasks": int(tasks),
            "cpu_seconds": int(lim.notebook_timeout) + 10,
            "readable": readable_roots(),
            "writable": [self.scratch, "/dev/null"],
        }
        os.set_blocking(self.wfd, False)  # every write has a deadline (wire.send)
        self.clock = StudentClock(self.proc.pid, self.slot.uid if self.slot else None)
        self._drain = threading.Thread(target=self._read_output, daemon=True)
        self._drain.start()
        self._send(settings)
        hello = self._receive(START_SECONDS, seq=0)
        if "setup_error" in hello:  # before any student code: a problem of the grader's
            raise SandboxFailed("the sandbox could not be set up:\n" + str(hello["setup_error"]))
        self.charged = 0.0  # starting up is the grader's time, not the student's
        self.info = {k: hello.get(k) for k in FENCE_KEYS}
        self.info["memory"] = memory_layer(self.memory, self.info["isolation"])
        if not self.info["tmpfs"]:
            threading.Thread(target=self._watch_scratch, daemon=True).start()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._closed.set()
        if self.proc is not None:
            kill_tree(self.proc)
            if self.slot is not None:
                self.slot.release()
                self.slot = None
            # Everything it started is dead, so the output pipe is at its end;
            # if something escaped and holds it, leave the fd rather than hang.
            self._drain.join(timeout=2)
            if not self._drain.is_alive():
                self.proc.stdout.close()
            for fd in (self.rfd, self.wfd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.proc = None
        elif self.slot is not None:
            self.slot.release()
            self.slot = None
        if self.memory is not None:
            self.memory.remove()
            self.memory = None
        shutil.rmtree(self.scratch, ignore_errors=True)

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _event(self, text):
        if text not in self.events:
            self.events.append(text)

    def _stop(self, text):
        self._event(text)
        kill_tree(self.proc)

    def _over_memory(self):
        """Whether its processes together went over the limit (then it is stopped)."""
        if self.memory is None or not self.memory.oom_kills():
            return False
        self._stop(memory_event(self.limits.memory_mb))
        return True

    # -- watchers -------------------------------------------------------------

    def _read_output(self):
        cap = self.limits.output_kb * 1024
        flood = self.limits.flood_mb * 2**20
        fd = self.proc.stdout.fileno()  # raw reads: close() never waits on this thread
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output_total += len(chunk)
            if len(self.output) < cap:
                self.output += chunk[: cap - len(self.output)]
            if self.output_total > flood:
                self._stop(f"Your code printed more than {self.limits.flood_mb} MB, "
                           "so it was stopped.")
                return

    def scratch_usage(self, stop_at=None):
        """(bytes, entries) in the scratch folder, counting at most ``stop_at`` entries."""
        total, count, stack = 0, 0, [self.scratch]
        while stack:
            try:
                with os.scandir(stack.pop()) as it:
                    for e in it:
                        count += 1
                        try:
                            st = e.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        total += st.st_blocks * 512
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        if stop_at and count >= stop_at:
                            return total, count
            except OSError:
                continue
        return total, count

    def _check_scratch(self):
        size, files = self.scratch_usage(stop_at=self.limits.max_files + 1)
        if size > self.limits.disk_mb * 2**20 or files > self.limits.max_files:
            self._stop(f"Your code wrote more than {self.limits.disk_mb} MB or "
                       f"{self.limits.max_files} files in its working folder, so it was stopped.")
            return False
        return True

    def _watch_scratch(self):
        """Without a tmpfs of its own, the folder is watched from outside."""
        while not self._closed.wait(0.5):
            if not self.alive or not self._check_scratch():
                return

    # -- the channel ----------------------------------------------------------

    def _send(self, message):
        try:
            wire.send(self.wfd, message, deadline=time.monotonic() + SEND_SECONDS)
        except TimeoutError:
            self._stop("Your code stopped reading the grader's private channel, so it was stopped.")
            raise StudentCrash("your code stopped reading the grader's channel") from None
        except OSError:
            raise StudentCrash(self._death()) from None

    def _wait(self, timeout):
        """Wait until a reply can be read; False when ``timeout`` charged seconds
        (or the wall-clock backstop) ran out first.  Adds to ``self.charged``."""
        clock = self.clock.start()
        backstop = WALL_FACTOR * timeout + WALL_EXTRA
        poll, used = 0.05, 0.0
        try:
            while True:
                left = timeout - used
                if select.select([self.rfd], [], [], min(poll, max(left, 0.0)))[0]:
                    return True
                if self._over_memory():  # the kernel killed one of its processes
                    raise StudentCrash("stopped: over the memory limit")
                used = clock.charged()
                if used >= timeout or clock.wall >= backstop:
                    return False
                poll = min(0.25, poll * 2)
        finally:
            self.charged += clock.charged(with_cpu=False)

    def _receive(self, timeout, seq, late=None):
        stopped = (late or f"Your code ran for more than {timeout:g} s and was stopped.")
        try:
            if not self._wait(timeout):
                raise TimeoutError
            # The frame has begun; the rest of it must follow promptly.
            reply = wire.recv(self.rfd, deadline=time.monotonic() + max(timeout, SEND_SECONDS),
                              max_items=wire.MAX_ITEMS)
        except TimeoutError:
            self._stop(stopped)
            raise StudentCrash(f"timed out after {timeout:g} s", timed_out=True) from None
        except (EOFError, OSError):
            raise StudentCrash(self._death()) from None
        except StudentCrash:
            raise
        except Exception as exc:  # garbage on the channel: a crash of theirs
            self._stop("Your code wrote into the grader's private channel, so it was stopped.")
            raise StudentCrash(f"the grader's channel was disturbed ({type(exc).__name__})") \
                from None
        if not isinstance(reply, dict) or reply.get("seq") != seq or "ok" not in reply:
            self._stop("Your code wrote into the grader's private channel, so it was stopped.")
            raise StudentCrash("the grader's channel was disturbed")
        if self._over_memory():  # the kernel killed one of its processes (a child, say)
            raise StudentCrash("stopped: over the memory limit")
        if reply.get("scratch_full"):
            self._event(f"Your code filled its working folder (at most {self.limits.disk_mb} MB "
                        f"and {self.limits.max_files} files); writing more failed.")
        return reply

    def _death(self):
        try:
            code = self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:  # alive but closed its end of the channel
            kill_tree(self.proc)
            self._event("Your code closed the grader's private channel, so it was stopped.")
            return "your code closed the grader's channel"
        if self._over_memory():
            return "stopped: over the memory limit"
        if code < 0:
            try:
                sig = signal.Signals(-code).name
            except ValueError:
                sig = f"signal {-code}"
            why = {"SIGKILL": "it was killed (likely the memory or output limit)",
                   "SIGXCPU": "it used up its CPU-time limit",
                   "SIGSEGV": "it crashed (segmentation fault: a recursion too deep?)",
                   "SIGXFSZ": "it wrote a file over the size limit"}.get(sig, sig)
        else:
            why = f"it exited with status {code}"
        text = f"Your notebook's process stopped: {why}."
        self._event(text)
        kill_tree(self.proc)  # and whatever it started
        return text

    def _request(self, message, timeout, late=None):
        if not self.alive:
            raise StudentCrash("your notebook's process is no longer running")
        self.seq += 1
        message["seq"] = self.seq
        self._send(message)
        reply = self._receive(timeout, self.seq, late)
        if not self.info.get("tmpfs") and not self._check_scratch():
            raise StudentCrash("stopped: its working folder grew over the limit")
        return reply

    def _error(self, reply):
        text = wire.clean(reply.get("error", ""), 4000)
        kind = wire.clean(reply.get("kind", ""), 100)
        if kind == "BlockingIOError" or "can't start new thread" in text:
            self._event(f"Your code tried to start more than {self.limits.max_tasks} processes "
                        "or threads; that was refused.")
        return StudentError(text, kind, wire.warnings_of(reply))

    def exec(self, source, name, timeout=None):
        """Run a cell; raises StudentError if it raised, StudentCrash if it died."""
        reply = self._request({"op": "exec", "source": source, "name": name},
                              timeout or self.limits.cell_timeout)
        if not reply["ok"]:
            raise self._error(reply)

    def call(self, name, args, kwargs, timeout=None, late=None, give_back=None):
        """Call the student's function ``name``.

        Returns (result, (args after, kwargs after), warnings): the arguments
        as the student's code left them (only those ``give_back`` = (positions,
        keyword names) asks for; all by default) and the warnings the call
        raised, as [category name, message] pairs.  ``late`` is the event text
        for a timeout (default: "ran for more than ... s").
        """
        enc = wire.Encoder(owner=self.token)
        try:
            message = {"op": "call", "name": name, "args": enc(list(args)),
                       "kwargs": enc(dict(kwargs))}
        except wire.WireError as exc:
            raise StudentError(str(exc), "TypeError") from None
        if give_back is not None:
            message["give_back"] = [sorted(give_back[0]), sorted(give_back[1])]
        reply = self._request(message, timeout or self.limits.cell_timeout, late)
        if not reply["ok"]:
            raise self._error(reply)
        try:
            dec = wire.Decoder(owner=self.token)
            result = dec(reply.get("result"))
            after = wire.Decoder(owner=self.token)(reply.get("args"))
            after_args, after_kwargs = after
        except Exception as exc:  # anything malformed is the student's problem
            raise StudentError(f"the value returned cannot be checked: {wire.clean(exc, 300)}",
                               "TypeError") from None
        return result, (after_args, after_kwargs), wire.warnings_of(reply)
