"""The grader's data: what is graded and what grading found, as typed values.

Every module that hands grading data to another speaks in these types; the
one serialisation below (``dumps``/``loads``: JSON with a schema version,
never pickles) carries them between processes (the local pool), machines
(Dask) and runs (the store's records), so a value that crossed a wire is the
same typed value again.

    Limits      what one submission may use (seconds, megabytes, processes)
    Submission  one student's notebook of one assignment, as it was found
    Job         a submission with the limits and seed it is graded under
    Outcome     why a check passed or failed: a ``Kind`` and its details
    Check       one check of a test cell: its points and its outcome
    Result      everything grading one submission found
    Graded      a job's result as an executor hands it back
    Record      what OUT keeps of a submission: the truth every view renders
    Manual      what a grader changed by hand in the gradebook (points, comments)

An ``Outcome`` is structured so that no reader has to parse English: a
``WRONG`` outcome carries the id of its diagnosis (``Diagnosis``) and, when
the course named the mistake, the course's own words for it (``cause``); a
``RAISED`` one the type of the exception as a standard-library name or
``ANOTHER_EXCEPTION`` (a class the student defined is their text, never the
grader's); a ``DEPENDENCY`` one the graded function to fix first.
"""
import dataclasses
import enum
import json
import typing
from dataclasses import dataclass, field

# One list of the exception classes named as they are, shared with the
# learner's notebook (where checks.py must stand alone).
from .checks import STANDARD_EXCEPTIONS

SCHEMA = 1


class Kind(str, enum.Enum):
    """How a check ended."""
    PASSED = "passed"
    WRONG = "wrong"                      # a value differs from the reference's
    RAISED = "raised"                    # the student's code raised an exception
    NOT_IMPLEMENTED = "not-implemented"  # the stub is still there
    DEPENDENCY = "dependency"            # a graded function it relies on is wrong
    TIMED_OUT = "timed-out"              # the student's code ran out of time
    CRASHED = "crashed"                  # the student's process stopped
    STOPPED = "stopped"                  # the test cell stopped before this check


class Diagnosis(str, enum.Enum):
    """What a ``WRONG`` outcome found (``checks.assert_close`` and friends)."""
    NAMED = "named"            # a mistake the course anticipated (``cause`` names it)
    SHAPE = "shape"
    TRANSPOSED = "transposed"
    SIGN = "sign"
    FACTOR = "factor"
    ZEROS = "zeros"
    NONFINITE = "nonfinite"
    DIFFERENCE = "difference"  # only how far off it is: a symptom, not a cause
    TYPE = "type"              # not a number, None, a tuple instead of an array, ...
    COUNT = "count"            # the wrong number of values returned
    RAISES = "raises"          # should have raised (or raised another exception)
    OTHER = "other"            # a check's own message (the check's name says what)


ANOTHER_EXCEPTION = "another exception"


def exception_label(name):
    """A standard-library exception's name, else ``ANOTHER_EXCEPTION``."""
    return name if name in STANDARD_EXCEPTIONS else ANOTHER_EXCEPTION


class Status(str, enum.Enum):
    """What became of a submission."""
    GRADED = "graded"
    MISSING = "missing"
    UNREADABLE = "unreadable"
    CRASHED = "crashed"
    GRADER_ERROR = "grader-error"


@dataclass(frozen=True)
class Limits:
    """What one submission may use.  Defaults suit the course's notebooks.

    cell_timeout, notebook_timeout: seconds charged to the student (see
    ``processes.StudentClock``), per cell and per process.
    isolation: "auto" (namespaces, a uid and a memory cgroup of its own when
    run as root) or "basic" (rlimits, Landlock and seccomp only, as for a
    non-root grader).  memory_mb bounds all of a sandbox's processes together.
    """
    cell_timeout: float = 30.0
    notebook_timeout: float = 300.0
    memory_mb: int = 2048
    output_kb: int = 256
    flood_mb: int = 20
    file_mb: int = 64
    disk_mb: int = 64
    max_files: int = 4096
    max_tasks: int = 64
    isolation: str = "auto"


@dataclass(frozen=True)
class Submission:
    """One student's notebook of one assignment, as found in SUBMITTED.

    path: the notebook (None when there is none); note: what the finder had
    to say (a renamed file, an unusable folder name); folder: the folder it
    was found in (its timestamp.txt is the submission's time).
    """
    student: str
    assignment: str
    path: typing.Optional[str] = None
    note: typing.Optional[str] = None
    folder: typing.Optional[str] = None


@dataclass(frozen=True)
class Job:
    """A submission with what it is graded under.  ``key``: the course key
    the hidden inputs are drawn with (``secret.py``; never in a record).
    ``notebook``: the file's bytes, or why it could not be read, when they
    travel with the job (a cluster worker need not see the submissions
    folder)."""
    submission: Submission
    limits: Limits
    seed: int
    key: typing.Optional[bytes] = None
    notebook: typing.Optional[bytes] = None
    unreadable: typing.Optional[str] = None


@dataclass(frozen=True)
class Outcome:
    """Why a check passed or failed.

    message: the words the learner reads under the check (the same in the
    notebook and in the grader; they may quote the student's values).
    diagnosis, cause: WRONG: what differs, and the course's name for the
    mistake (``Diagnosis.NAMED``).  exception: RAISED: ``exception_label``
    of its type.  needs: DEPENDENCY: the graded function to fix first.
    """
    kind: Kind
    message: str = ""
    diagnosis: typing.Optional[Diagnosis] = None
    cause: str = ""
    exception: str = ""
    needs: str = ""

    @property
    def passed(self):
        return self.kind is Kind.PASSED


PASSED = Outcome(Kind.PASSED)


@dataclass(frozen=True)
class Check:
    """One check of a test cell.  points: what it is worth; score: what it
    earned (``points`` if it passed and nothing was ``withheld``, else 0)."""
    name: str
    cell: str
    hidden: bool
    points: float
    score: float
    outcome: Outcome
    withheld: str = ""  # why a passed visible check earned nothing (grade.withhold_unearned)

    @property
    def passed(self):
        """The verdict (as in the learner's notebook), whatever it earned."""
        return self.outcome.passed


@dataclass(frozen=True)
class CellError:
    """An error the grader met running one of the student's cells."""
    cell: str
    error: str


@dataclass(frozen=True)
class Fence:
    """The sandbox's layers that were in force (``fence.py``)."""
    landlock_abi: int = 0
    scoped: bool = False
    isolation: str = "none"
    private_tmpfs: bool = False
    ipc_namespace: bool = False
    seccomp: bool = False
    memory: str = "per-process"   # cgroup1, cgroup2, split or per-process (cgroup.py)
    secret_key: bool = False      # hidden inputs drawn with a course key (secret.py)
    restarts: int = 0


@dataclass(frozen=True)
class Result:
    """What grading one submission found.  ``checks`` in the order of the
    test cells; the scores are rounded as stored (6 places per check, 4 for
    the total)."""
    status: Status
    score: float
    max_score: float
    extra_credit: float = 0.0
    extra_cells: typing.Tuple[str, ...] = ()
    checks: typing.Tuple[Check, ...] = ()
    notes: typing.Tuple[str, ...] = ()
    events: typing.Tuple[str, ...] = ()
    cell_errors: typing.Tuple[CellError, ...] = ()
    student_output: str = ""
    fence: Fence = field(default_factory=Fence)
    seed: int = 0

    @property
    def graded(self):
        return self.status is Status.GRADED


def not_graded(status, max_score, notes, seed):
    """The result of a submission that could not be graded: a zero and why."""
    return Result(status=Status(status), score=0.0, max_score=float(max_score),
                  notes=tuple(notes), seed=seed)


@dataclass(frozen=True)
class Graded:
    """What an executor hands back for a job: the result, the grading's wall
    time, and the worker that graded it (None on this machine)."""
    submission: Submission
    result: Result
    seconds: float = 0.0
    worker: typing.Optional[str] = None


@dataclass(frozen=True)
class Record:
    """What OUT keeps of one graded submission, the one truth every view is
    rendered from (``render``): the submission as found, what grading found,
    and the key it was graded under (``store.key``)."""
    submission: Submission
    result: Result
    key: str = ""


@dataclass(frozen=True)
class Comment:
    """A grader's comment on an answer cell, entered in the formgrader."""
    cell: str
    text: str


@dataclass(frozen=True)
class Manual:
    """What a grader changed by hand in the gradebook for one submission:
    the gradebook's total where manual points changed it, and comments."""
    score: typing.Optional[float] = None
    comments: typing.Tuple[Comment, ...] = ()


NO_MANUAL = Manual()


def final_score(result, manual):
    """The score every view shows: the gradebook's where a grader changed it."""
    return result.score if manual.score is None else round(manual.score, 4)


# ----------------------------------------------------------------------------
# The one serialisation: JSON with a schema version


def encode(value):
    """``value`` (a dataclass of this module, or plain data) as JSON-able data."""
    if dataclasses.is_dataclass(value):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        import base64
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode(kind, data):
    """The value of type ``kind`` that ``encode`` gave ``data`` for."""
    origin = typing.get_origin(kind)
    if origin is typing.Union:  # Optional[X]
        if data is None:
            return None
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return decode(inner[0], data)
    if origin in (tuple, list):
        (item, *_) = typing.get_args(kind)
        return tuple(decode(item, v) for v in data)
    if dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise ValueError(f"{kind.__name__}: expected an object")
        hints = typing.get_type_hints(kind)
        names = {f.name for f in dataclasses.fields(kind)}
        return kind(**{k: decode(hints[k], v) for k, v in data.items() if k in names})
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(data)
    if kind is bytes:
        import base64
        return base64.b64decode(data["__bytes__"])
    if kind is float:
        return float(data)
    return data


def dumps(value):
    """JSON text of ``value``, versioned: {"schema", "type", "data"}."""
    return json.dumps({"schema": SCHEMA, "type": type(value).__name__, "data": encode(value)},
                      sort_keys=True, ensure_ascii=False)


def loads(kind, text):
    """The ``kind`` that ``dumps`` wrote as ``text``; ValueError for another
    type or schema."""
    envelope = json.loads(text) if isinstance(text, (str, bytes)) else text
    if envelope.get("schema") != SCHEMA or envelope.get("type") != kind.__name__:
        raise ValueError(f"not a {kind.__name__} of schema {SCHEMA}")
    return decode(kind, envelope["data"])
