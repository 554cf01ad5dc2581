"""The data format between the grader and the process running student code.

Only plain data crosses: JSON, with NumPy arrays as raw bytes of a plain
numeric dtype whose header (dtype, shape) is checked against the byte count
before anything is allocated, so nothing a student's process sends can run
code in the grader or make it allocate more than the frame it already read.
Objects that are not plain data (a cache made of a custom class, say) stay
in the student's process and cross as a ``Handle``, which names the process
it belongs to: a handle from a process that has since been restarted, or
from the other of a submission's two processes, is refused, never
confused with another object.

Limits, each an error the student reads rather than a crash of the grader:
a frame of at most ``MAX_FRAME`` bytes holding at most ``MAX_ITEMS`` JSON
values (counted on the raw bytes before parsing, so a frame of a million
empty dicts cannot make the grader build them: decoding costs a small
multiple of the frame's size, whatever it holds), nesting at most
``MAX_DEPTH`` deep, integers of at most ``MAX_INT_BITS`` bits (exact, beyond
64 bits too).  Every string that arrives from the student's side is
``clean``: valid UTF-8 (a lone surrogate becomes U+FFFD) and at most
``MAX_TEXT`` characters, so no report can fail to be written because of it.

This module is also sent verbatim to the worker process, so it imports only
the standard library and NumPy.
"""
import base64
import json
import os
import select
import struct
import time

import numpy as np

MAX_FRAME = 32 * 2**20  # a larger message is refused (the course's arrays are tiny)
MAX_ITEMS = 200_000     # JSON values in one frame (arrays travel as one string each)
MAX_TEXT = 20_000       # characters of one string from the student's side
MAX_DEPTH = 64          # lists in dicts in tuples ...: deeper is an attack or a bug
MAX_INT_BITS = 2**16    # exact integers (bins**D) cross; astronomically long ones do not
_KINDS = "biufc"        # bool, int, uint, float, complex: nothing else crosses


class Handle:
    """An object that lives in the student's process, referred to by number."""

    def __init__(self, key, owner=None, kind="object"):
        self.key = key
        self.owner = owner  # which process holds it (see Sandbox.token)
        self.kind = kind

    def __repr__(self):
        return f"<{self.kind} object in your notebook's process>"


_handle_types = {}


def _handle_class(kind):
    """A Handle subclass named after the student's type, so a check saying
    "got <type name>" names the student's class, not ours."""
    kind = "".join(ch for ch in str(kind)[:60] if ch.isalnum() or ch in "_.") or "object"
    if kind not in _handle_types:
        _handle_types[kind] = type(kind, (Handle,), {})
    return _handle_types[kind]


class Closure:
    """A function of no arguments made of an expression and named values.

    The checks use it where a graded function takes a callable (the gradient
    checker): the expression is evaluated where the student's code runs, over
    the very arrays passed alongside it, so in-place perturbation is seen.
    """

    def __init__(self, expr, env):
        self.expr = expr
        self.env = env


class WireError(TypeError):
    """A value that cannot cross (too deep, too large, not plain data)."""


def clean(text, limit=MAX_TEXT):
    """``text`` as valid UTF-8 of at most ``limit`` characters (with a note
    when cut): safe to write into any report, whatever the student sent."""
    if not isinstance(text, str):
        text = str(text)
    if len(text) > limit:
        text = text[:limit] + f" [... {len(text) - limit} more characters not shown]"
    return text.encode("utf-8", "replace").decode("utf-8")


class Encoder:
    """Turns Python values into JSON-able data, remembering shared objects.

    The same array (or dict, list, Generator) reached twice is sent once and
    referred to by number, so aliasing survives the trip.  ``store`` (worker
    side) keeps objects that are not plain data; ``owner`` (grader side) is
    the token of the process the message goes to.
    """

    def __init__(self, store=None, owner=None):
        self.seen = {}      # id(obj) -> number
        self.objects = []   # number -> obj (keeps them alive while encoding)
        self.store = store
        self.owner = owner
        self.depth = 0

    def __call__(self, v):
        if v is None or type(v) in (str, bool):
            return v
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            i = int(v)
            if -2**63 <= i < 2**63:
                return i
            if i.bit_length() > MAX_INT_BITS:
                raise WireError(f"an integer of more than {MAX_INT_BITS} bits cannot be checked")
            return {"__int__": hex(i)}  # exact; hex has no digit limit on parsing
        if isinstance(v, (float, np.floating)):
            f = float(v)
            return f if f - f == 0 else {"__float__": repr(f)}
        if isinstance(v, str):
            return str(v)
        if isinstance(v, np.generic):
            return self(np.asarray(v))
        if id(v) in self.seen:
            return {"__ref__": self.seen[id(v)]}
        if isinstance(v, Handle):
            if self.owner is not None and v.owner != self.owner:
                raise WireError(f"{v!r} was made by an earlier run of your code (your notebook's "
                                "process was restarted, or it belongs to the hidden checks' "
                                "process) and cannot be used here")
            return {"__handle__": v.key}
        key = len(self.objects)
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in _KINDS or v.dtype.fields is not None:
                raise WireError(f"an array of dtype {v.dtype} cannot be checked "
                                "(use float64 numbers)")
            self.seen[id(v)] = key
            self.objects.append(v)
            a = np.ascontiguousarray(v)
            if a.nbytes > MAX_FRAME:
                raise WireError(f"an array of {a.nbytes / 2**20:.0f} MB is too large to check")
            return {"__nd__": base64.b64encode(a.tobytes()).decode("ascii"),
                    "dtype": a.dtype.str, "shape": list(a.shape), "id": key}
        if isinstance(v, np.random.Generator):
            self.seen[id(v)] = key
            self.objects.append(v)
            return {"__rng__": json.dumps(v.bit_generator.state), "id": key}
        if isinstance(v, Closure):
            return {"__closure__": v.expr, "env": self(v.env)}
        if isinstance(v, (list, tuple, dict)):
            self.seen[id(v)] = key
            self.objects.append(v)
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise WireError(f"a value nested more than {MAX_DEPTH} levels deep "
                                "cannot be checked")
            try:
                if isinstance(v, dict):
                    return {"__dict__": [[self(k), self(x)] for k, x in v.items()], "id": key}
                tag = "__list__" if isinstance(v, list) else "__tuple__"
                return {tag: [self(x) for x in v], "id": key}
            finally:
                self.depth -= 1
        if self.store is not None:
            self.store.append(v)
            return {"__handle__": len(self.store) - 1, "kind": type(v).__name__}
        raise WireError(f"cannot send a value of type {type(v).__name__}")


def _array(d):
    """An array from its message, checked before anything is allocated."""
    dtype = np.dtype(str(d["dtype"]))
    if dtype.kind not in _KINDS or dtype.fields is not None or dtype.itemsize > 16:
        raise WireError(f"arrays of dtype {dtype} are not accepted")
    shape = d["shape"]
    if (not isinstance(shape, list) or len(shape) > 32
            or not all(type(n) is int and 0 <= n for n in shape)):
        raise WireError("malformed array shape")
    raw = base64.b64decode(d["__nd__"], validate=True)
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(raw):
        raise WireError("array data does not match its shape")
    return np.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)


class Decoder:
    """The inverse of ``Encoder``.

    Worker side: ``store`` resolves handles and ``closure`` builds callables.
    Grader side: ``owner`` is stamped on every handle received, and every
    string is ``clean``.
    """

    def __init__(self, store=None, closure=None, owner=None):
        self.refs = {}
        self.store = store
        self.closure = closure
        self.owner = owner
        self.depth = 0

    def __call__(self, d):
        if isinstance(d, list):
            raise WireError("malformed message")
        if isinstance(d, str):
            return d if self.owner is None else clean(d)
        if not isinstance(d, dict):
            return d
        if "__ref__" in d:
            return self.refs[d["__ref__"]]
        if "__float__" in d:
            text = d["__float__"]
            if text not in ("nan", "inf", "-inf"):
                raise WireError("malformed number")
            return float(text)
        if "__int__" in d:
            text = d["__int__"]
            if not isinstance(text, str) or len(text) > MAX_INT_BITS // 4 + 3:
                raise WireError("malformed integer")
            return int(text, 16)
        if "__handle__" in d:
            if self.store is None:
                return _handle_class(d.get("kind", "object"))(d["__handle__"], self.owner,
                                                             d.get("kind", "object"))
            return self.store[d["__handle__"]]
        if "__nd__" in d:
            out = _array(d)
            self.refs[d["id"]] = out
            return out
        if "__rng__" in d:
            g = np.random.Generator(np.random.PCG64())
            g.bit_generator.state = json.loads(d["__rng__"])
            self.refs[d["id"]] = g
            return g
        if "__closure__" in d:
            if self.closure is None:
                raise WireError("closures only travel to the student's process")
            return self.closure(d["__closure__"], self(d["env"]))
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WireError(f"a value nested more than {MAX_DEPTH} levels deep cannot be checked")
        try:
            if "__dict__" in d:
                out = {}
                self.refs[d["id"]] = out
                for k, v in d["__dict__"]:
                    out[self(k)] = self(v)
                return out
            if "__list__" in d:
                out = []
                self.refs[d["id"]] = out
                out.extend(self(x) for x in d["__list__"])
                return out
            if "__tuple__" in d:
                out = tuple(self(x) for x in d["__tuple__"])
                self.refs[d["id"]] = out
                return out
        finally:
            self.depth -= 1
        raise WireError("malformed message")


def dumps(message):
    """A frame's bytes; raises WireError when it would exceed MAX_FRAME."""
    data = json.dumps(message, allow_nan=False).encode()
    if len(data) > MAX_FRAME:
        raise WireError(f"the value returned ({len(data) / 2**20:.0f} MB) is too large to check")
    return struct.pack("<Q", len(data)) + data


def send(fd, message, data=None, deadline=None):
    """Write one frame.  With a ``deadline`` (time.monotonic()) ``fd`` must be
    non-blocking, and a reader that stops reading raises TimeoutError."""
    view = memoryview(data if data is not None else dumps(message))
    while view:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise TimeoutError
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            continue
        view = view[n:]


def recv(fd, deadline=None, max_items=None):
    """Read one frame.

    Raises EOFError when the other side is gone, TimeoutError when the whole
    frame has not arrived by ``deadline`` (time.monotonic()), ValueError for a
    frame that is not one of ours or holds more than ``max_items`` values.
    """
    header = _read_exactly(fd, 8, deadline)
    (n,) = struct.unpack("<Q", header)
    if n > MAX_FRAME:
        raise ValueError(f"a message of {n} bytes is over the limit")
    data = _read_exactly(fd, n, deadline)
    # Every JSON value but the outermost follows a '[', a ',' or a ':'; the
    # count is an upper bound (those bytes inside strings count too).
    if max_items is not None and (data.count(b",") + data.count(b"[")
                                  + data.count(b":")) > max_items:
        raise ValueError(f"a message of more than {max_items} values is over the limit")
    return json.loads(data)


def _read_exactly(fd, n, deadline):
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        k = os.readv(fd, [view[got:got + (1 << 20)]])
        if not k:
            raise EOFError
        got += k
    return buf


def warnings_of(reply):
    """The warnings of a reply as (category name, message) pairs, cleaned."""
    out = []
    for w in (reply.get("warnings") or [])[:20] if isinstance(reply.get("warnings"), list) else []:
        if isinstance(w, list) and len(w) == 2:
            out.append((clean(w[0], 100), clean(w[1], 1000)))
    return out
