"""The data format between the grader and the process running student code.

Only plain data crosses: JSON with NumPy arrays as ``.npy`` bytes loaded with
``allow_pickle=False``, so nothing a student's process sends can execute code
in the grader.  Objects that are not plain data (a cache made of a custom
class, say) stay in the student's process and cross as a ``Handle``.

This module is also sent verbatim to the worker process, so it imports only
the standard library and NumPy.
"""
import base64
import io
import json
import struct

import numpy as np

MAX_FRAME = 256 * 2**20  # a larger message is treated as an attack or a bug


class Handle:
    """An object that lives in the student's process, referred to by number."""

    def __init__(self, key):
        self.key = key

    def __repr__(self):
        return f"<object #{self.key} in the student's process>"


class Closure:
    """A function of no arguments made of an expression and named values.

    The checks use it where a graded function takes a callable (the gradient
    checker): the expression is evaluated where the student's code runs, over
    the very arrays passed alongside it, so in-place perturbation is seen.
    """

    def __init__(self, expr, env):
        self.expr = expr
        self.env = env


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _from_npy(text):
    return np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)


class Encoder:
    """Turns Python values into JSON-able data, remembering shared objects.

    The same array (or dict, list, Generator) reached twice is sent once and
    referred to by number, so aliasing survives the trip.
    """

    def __init__(self, store=None):
        self.seen = {}      # id(obj) -> number
        self.objects = []   # number -> obj (keeps them alive while encoding)
        self.store = store  # worker side: where non-plain objects are kept

    def __call__(self, v):
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            f = float(v)
            return f if np.isfinite(f) else {"__float__": repr(f)}
        if isinstance(v, np.generic):
            return self(np.asarray(v))
        if id(v) in self.seen:
            return {"__ref__": self.seen[id(v)]}
        if isinstance(v, Handle):
            return {"__handle__": v.key}
        key = len(self.objects)
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                raise TypeError("an array of Python objects (dtype=object) cannot be checked")
            self.seen[id(v)] = key
            self.objects.append(v)
            return {"__nd__": _npy(np.ascontiguousarray(v)), "id": key}
        if isinstance(v, np.random.Generator):
            self.seen[id(v)] = key
            self.objects.append(v)
            return {"__rng__": json.dumps(v.bit_generator.state), "id": key}
        if isinstance(v, Closure):
            return {"__closure__": v.expr, "env": self(v.env)}
        if isinstance(v, (list, tuple, dict)):
            self.seen[id(v)] = key
            self.objects.append(v)
            if isinstance(v, dict):
                return {"__dict__": [[self(k), self(x)] for k, x in v.items()], "id": key}
            tag = "__list__" if isinstance(v, list) else "__tuple__"
            return {tag: [self(x) for x in v], "id": key}
        if self.store is not None:
            self.store.append(v)
            return {"__handle__": len(self.store) - 1}
        raise TypeError(f"cannot send a value of type {type(v).__name__}")


class Decoder:
    """The inverse of ``Encoder``; ``closure`` builds callables (worker side)."""

    def __init__(self, store=None, closure=None):
        self.refs = {}
        self.store = store
        self.closure = closure

    def __call__(self, d):
        if not isinstance(d, dict):
            return d
        if "__ref__" in d:
            return self.refs[d["__ref__"]]
        if "__float__" in d:
            return float(d["__float__"])
        if "__handle__" in d:
            if self.store is None:
                return Handle(d["__handle__"])
            return self.store[d["__handle__"]]
        if "__nd__" in d:
            out = _from_npy(d["__nd__"])
            if out.dtype.hasobject:
                raise TypeError("object arrays are not accepted")
            self.refs[d["id"]] = out
            return out
        if "__rng__" in d:
            g = np.random.Generator(np.random.PCG64())
            g.bit_generator.state = json.loads(d["__rng__"])
            self.refs[d["id"]] = g
            return g
        if "__closure__" in d:
            if self.closure is None:
                raise TypeError("closures only travel to the student's process")
            return self.closure(d["__closure__"], self(d["env"]))
        if "__dict__" in d:
            out = {}
            self.refs[d["id"]] = out
            for k, v in d["__dict__"]:
                out[self(k)] = self(v)
            return out
        for tag, kind in (("__list__", list), ("__tuple__", tuple)):
            if tag in d:
                if kind is list:
                    out = []
                    self.refs[d["id"]] = out
                    out.extend(self(x) for x in d[tag])
                else:
                    out = tuple(self(x) for x in d[tag])
                    self.refs[d["id"]] = out
                return out
        raise TypeError("malformed message")


def send(fd, message):
    data = json.dumps(message, allow_nan=False).encode()
    _write_all(fd, struct.pack("<Q", len(data)) + data)


def _write_all(fd, data):
    import os
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def recv(fd):
    """Read one frame; raises EOFError when the other side is gone."""
    header = _read_exactly(fd, 8)
    (n,) = struct.unpack("<Q", header)
    if n > MAX_FRAME:
        raise ValueError(f"message of {n} bytes is over the limit")
    return json.loads(_read_exactly(fd, n))


def _read_exactly(fd, n):
    import os
    chunks, got = [], 0
    while got < n:
        b = os.read(fd, min(n - got, 1 << 20))
        if not b:
            raise EOFError
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)
