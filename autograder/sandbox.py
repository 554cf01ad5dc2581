"""Runs student code in a fenced process and calls into it from the grader.

The grader (trusted) never executes student code.  A ``Sandbox`` is a fresh
Python process with memory, CPU-time, file-size and output limits, its own
scratch directory as the only writable place and, where the kernel offers
Landlock, no read access to anything but the Python installation, so the
reference solutions, the hidden tests and the gradebook are out of its
reach.  ``StudentFunction`` objects make calls into it look like local calls:
arguments go over, results come back as plain data, and in-place changes to
array, list and dict arguments are copied back.
"""
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from . import wire

_HERE = Path(__file__).resolve().parent
_WORKER_SOURCE = ((_HERE / "wire.py").read_text() + "\n"
                  + (_HERE / "worker.py").read_text())


class Limits:
    """What one submission may use.  Defaults suit the course's notebooks."""

    def __init__(self, cell_timeout=30.0, notebook_timeout=300.0,
                 memory_mb=2048, output_kb=256, flood_mb=20, file_mb=64):
        self.cell_timeout = cell_timeout
        self.notebook_timeout = notebook_timeout
        self.memory_mb = memory_mb
        self.output_kb = output_kb
        self.flood_mb = flood_mb
        self.file_mb = file_mb


class StudentCrash(Exception):
    """The student's process stopped (time limit, memory, a signal, ...)."""


class StudentError(Exception):
    """The student's code raised; ``args[0]`` is their traceback."""

    def __init__(self, text, kind="Exception"):
        super().__init__(text)
        self.kind = kind


def readable_roots():
    """Directories the student's process may read: the Python installation."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr", "/lib",
             "/lib64", "/bin", "/etc/ld.so.cache", "/dev/null", "/dev/urandom"}
    for p in sys.path:
        # site-packages of the interpreter; never the course's own folders.
        if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p):
            roots.add(p)
    return sorted(roots)


class Sandbox:
    """One student process.  Use as a context manager."""

    def __init__(self, limits, seed=0):
        self.limits = limits
        self.seed = seed
        self.scratch = tempfile.mkdtemp(prefix="grading-")
        self.output = bytearray()
        self.output_total = 0
        self.events = []  # what went wrong, in words for the feedback
        self.proc = None
        self.landlock = 0

    # -- life cycle ---------------------------------------------------------

    def start(self):
        r_child, w_parent = os.pipe()
        r_parent, w_child = os.pipe()
        lim = self.limits
        limits = {
            "scratch": self.scratch,
            "memory_bytes": int(lim.memory_mb) * 2**20,
            "file_bytes": int(lim.file_mb) * 2**20,
            "cpu_seconds": int(lim.notebook_timeout) + 10,
            "readable": readable_roots(),
            "writable": [self.scratch],
        }
        env = {
            "PATH": "/usr/bin:/bin", "HOME": self.scratch, "TMPDIR": self.scratch,
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": self.scratch,
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "LANG": "C.UTF-8",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _WORKER_SOURCE,
             str(r_child), str(w_child), json.dumps(limits)],
            pass_fds=(r_child, w_child), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=self.scratch, env=env, start_new_session=True)
        os.close(r_child)
        os.close(w_child)
        self.rfd, self.wfd = r_parent, w_parent
        self._drain = threading.Thread(target=self._read_output, daemon=True)
        self._drain.start()
        hello = self._receive(timeout=60.0)
        self.landlock = hello.get("landlock", 0)
        # Student code that draws unseeded random numbers still grades the same.
        self.exec(f"import numpy as _np\n_np.random.seed({self.seed})\ndel _np", "<grader>")
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.proc is not None:
            kill_tree(self.proc)
            self.proc.stdout.close()
            for fd in (self.rfd, self.wfd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.proc = None
        shutil.rmtree(self.scratch, ignore_errors=True)

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- output -------------------------------------------------------------

    def _read_output(self):
        cap = self.limits.output_kb * 1024
        flood = self.limits.flood_mb * 2**20
        stream = self.proc.stdout
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                return
            self.output_total += len(chunk)
            if len(self.output) < cap:
                self.output += chunk[: cap - len(self.output)]
            if self.output_total > flood:
                self.events.append(
                    f"Your code printed more than {self.limits.flood_mb} MB, "
                    "so it was stopped.")
                kill_tree(self.proc)
                return

    # -- requests -------------------------------------------------------------

    def _receive(self, timeout):
        ready, _, _ = select.select([self.rfd], [], [], timeout)
        if not ready:
            self.events.append(f"Your code ran for more than {timeout:g} s "
                               "and was stopped.")
            kill_tree(self.proc)
            raise StudentCrash(f"timed out after {timeout:g} s")
        try:
            return wire.recv(self.rfd)
        except (EOFError, OSError):
            raise StudentCrash(self._death()) from None
        except ValueError as exc:  # garbage on the channel: treat as a crash
            kill_tree(self.proc)
            raise StudentCrash(f"the grader's channel was disturbed ({exc})") from None

    def _death(self):
        code = self.proc.wait()
        if code < 0:
            sig = signal.Signals(-code).name
            why = {"SIGKILL": "it was killed (likely the memory or output limit)",
                   "SIGXCPU": "it used up its CPU-time limit",
                   "SIGSEGV": "it crashed (segmentation fault)",
                   "SIGXFSZ": "it wrote a file over the size limit"}.get(sig, sig)
        else:
            why = f"it exited with status {code}"
        text = f"Your notebook's process stopped: {why}."
        if text not in self.events:
            self.events.append(text)
        return text

    def _request(self, message, timeout):
        if not self.alive:
            raise StudentCrash("your notebook's process is no longer running")
        try:
            wire.send(self.wfd, message)
        except (BrokenPipeError, OSError):
            raise StudentCrash(self._death()) from None
        reply = self._receive(timeout)
        if not isinstance(reply, dict) or "ok" not in reply:
            raise StudentCrash("the grader's channel was disturbed")
        return reply

    def exec(self, source, name, timeout=None):
        """Run a cell; raises StudentError if it raised, StudentCrash if it died."""
        reply = self._request({"op": "exec", "source": source, "name": name},
                              timeout or self.limits.cell_timeout)
        if not reply["ok"]:
            raise StudentError(str(reply.get("error", "")), str(reply.get("kind", "")))

    def call(self, name, args, kwargs, timeout=None):
        enc = wire.Encoder()
        message = {"op": "call", "name": name, "args": enc(list(args)),
                   "kwargs": enc(dict(kwargs))}
        reply = self._request(message, timeout or self.limits.cell_timeout)
        if not reply["ok"]:
            raise StudentError(str(reply.get("error", "")), str(reply.get("kind", "")))
        try:
            result = wire.Decoder()(reply["result"])
            after_args, after_kwargs = wire.Decoder()(reply["args"])
        except Exception as exc:  # anything malformed is the student's problem
            raise StudentError(f"the value returned cannot be checked: {exc}",
                               "TypeError") from None
        for before, after in zip(args, after_args):
            copy_back(before, after)
        for k in kwargs:
            copy_back(kwargs[k], after_kwargs.get(k))
        return result


def copy_back(before, after):
    """Make ``before`` look as the student's code left its copy of it."""
    if isinstance(before, np.ndarray) and isinstance(after, np.ndarray):
        if before.shape == after.shape and before.flags.writeable:
            np.copyto(before, after, casting="unsafe")
    elif isinstance(before, dict) and isinstance(after, dict):
        for k in list(before):
            if k not in after:
                del before[k]
        for k, v in after.items():
            if k in before and isinstance(before[k], (np.ndarray, dict, list)) \
                    and type(before[k]) is type(v):
                copy_back(before[k], v)
            else:
                before[k] = v
    elif isinstance(before, list) and isinstance(after, list):
        if len(before) == len(after):
            for i, v in enumerate(after):
                if isinstance(before[i], (np.ndarray, dict, list)) and type(before[i]) is type(v):
                    copy_back(before[i], v)
                else:
                    before[i] = v
        else:
            before[:] = after
    elif isinstance(before, np.random.Generator) and isinstance(after, np.random.Generator):
        before.bit_generator.state = after.bit_generator.state


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
    if _SUBREAPER:
        try:
            import psutil
            # A grading process has no children but sandboxes, and as a
            # subreaper it adopts what they orphan: all of them are student's.
            for child in psutil.Process().children(recursive=True):
                child.kill()
        except Exception:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


_SUBREAPER = False


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


class StudentFunction:
    """Calls the student's function of this name inside the sandbox."""

    def __init__(self, sandbox_ref, name):
        self._ref = sandbox_ref  # a callable returning the live Sandbox
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        return self._ref().call(self.__name__, args, kwargs)

    def __repr__(self):
        return f"<your function {self.__name__}>"
