"""Similarity between submissions: ``OUT/similarity.csv`` and ``OUT/similarity.html``.

For each assignment, what each student *wrote* is compared with what every
other student wrote: the answer cells (matched to the source's by nbgrader
``grade_id``, as the grader matches them), less the lines of the released
template (signature, docstring, ``# YOUR CODE HERE``), split per graded
function (top-level definitions; a helper counts with the graded function of
its cell; a cell that does not parse is one piece).

Method: winnowing (Schleimer, Wilkerson and Aiken 2003, as MOSS, JPlag,
Dolos and copydetect use it) over normalised Python tokens.  Tokens come
from the standard library's ``tokenize`` (a plain lexer when it refuses the
text); comments, docstrings, blank lines and indentation are dropped, every
name the student chose becomes ``V`` (keywords, builtins and attribute
names such as ``np.exp``'s ``exp`` stay: renaming them changes the
program), numbers ``N`` and strings ``S``.  Every run of ``K`` tokens is
hashed; in every window of ``WINDOW`` consecutive hashes the smallest is
kept as a fingerprint, so any common stretch of ``K + WINDOW - 1`` tokens
or more yields a common fingerprint, wherever it sits and whatever
surrounds it.  Renaming, reordering functions, reformatting, changing
comments or adding dead code leave the fingerprints of the code that stayed.

Left out before comparing (every k-gram of it, not only its fingerprints):
what every notebook shares (the released notebook's template, given,
set-up, check and test cells and its text's code, the code of the book's
chapters) and, for pairs of students, the reference solutions and the
fragments found in more than ``common_limit`` notebooks (idioms everyone
writes).  A student who pasted the reference is thus paired with the
pseudo-student ``reference`` (compared with the reference answers of the
functions they answered), not with everyone who did the same.  Notebooks
with fewer than ``MIN_FINGERPRINTS`` fingerprints of their own (untouched
or nearly empty) form no pair.

Score of two sets A and B of fingerprints: the mean of the two containments,
(|A∩B|/|A| + |A∩B|/|B|) / 2, in [0, 1], symmetric, 1 for the same code;
dead code added to one side halves at most that side's half.  The same per
graded function.

Cost: an inverted index fingerprint -> notebooks, so the work is the sum
over fingerprints of the pairs of notebooks sharing it, not n² set
comparisons; pair counts are accumulated one student at a time, and only
pairs scored ``LIST_FLOOR`` or more are kept (memory: the fingerprints, the
index, and those pairs).

Earlier terms' submissions (``--against``) are compared with this class's,
never with each other; their fragments count towards the idiom limit.

The report is the instructor's: it is written at the top of OUT, never in a
student's folder.  It says "similar", never more: a similarity is a reason
to look, not a finding.
"""
import ast
import bisect
import builtins
import csv
import io
import keyword
import math
import os
import re
import tempfile
import tokenize
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import course, grade

K = 9                   # tokens per k-gram: shorter common stretches are noise
WINDOW = 5              # so any common stretch of K + WINDOW - 1 = 13 tokens is found
MIN_FINGERPRINTS = 8    # a notebook with fewer of its own forms no pair
MIN_FUNCTION_FINGERPRINTS = 3   # a function with fewer gets no score of its own
THRESHOLD = 0.5         # pairs from this score on are flagged and shown side by side
COMMON_SHARE = 0.2      # a fragment in more than this share of the notebooks is an idiom
COMMON_MIN = 10         # ... and in more than this many
MAX_SOURCE = 100_000    # characters of one answer cell looked at
PARALLEL_MIN = 8        # notebooks per process below which reading in one process is faster
MAX_SHOWN = 25          # flagged pairs shown side by side, per assignment
MAX_LINES = 300         # lines of one function shown
MAX_FUNCTIONS = 8       # functions of one pair shown side by side
MAX_LISTED = 200        # pairs in the HTML table (the CSV holds every pair listed)
LIST_FLOOR = 0.1        # pairs of students under this score are counted, not listed
TOP_FUNCTIONS = 3       # functions named per pair
REFERENCE = "reference"
CSV_NAME, HTML_NAME = "similarity.csv", "similarity.html"
CSV_COLUMNS = ["assignment", "student_a", "student_b", "kind", "score", "fingerprints_a",
               "fingerprints_b", "shared", "top_functions"]
BINS = 10               # histogram bins over [0, 1]

_BUILTINS = frozenset(dir(builtins))
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
         tokenize.ENDMARKER}


# ----------------------------------------------------------------------------
# Tokens


_LEX = re.compile(r"""
  (?P<comment>\#[^\n]*)
| (?P<string>[rRbBuUfF]{0,2}(?:'''[\s\S]*?(?:'''|\Z)|\"\"\"[\s\S]*?(?:\"\"\"|\Z)
                            |'(?:\\.|[^'\\\n])*'?|"(?:\\.|[^"\\\n])*"?))
| (?P<name>[^\W\d]\w*)
| (?P<number>0[xXoObB]\w+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][-+]?\d[\d_]*)?[jJ]?)
| (?P<continuation>\\\n)
| (?P<newline>\n)
| (?P<op>\*\*=?|//=?|->|:=|<<=?|>>=?|[-+*/%@&|^<>=!]=|[^\s\w])
""", re.X)
_LEX_TYPES = {"comment": tokenize.COMMENT, "string": tokenize.STRING, "name": tokenize.NAME,
              "number": tokenize.NUMBER, "newline": tokenize.NEWLINE, "op": tokenize.OP}


def _lex(source):
    """(type, text, line) by a plain lexer: for text ``tokenize`` refuses
    (a student's unfinished cell).  As ``tokenize``, a line break inside
    brackets or after a backslash does not end a statement."""
    starts = [m.end() for m in re.finditer("\n", source)]
    found, depth = [], 0
    for m in _LEX.finditer(source):
        kind, text = m.lastgroup, m.group()
        if kind == "continuation" or (kind == "newline" and depth > 0):
            continue
        if kind == "op":
            depth = max(0, depth + (text in "([{") - (text in ")]}"))
        found.append((_LEX_TYPES[kind], text, bisect.bisect_right(starts, m.start()) + 1))
    return found


def _raw_tokens(source):
    try:
        return [(t.type, t.string, t.start[0])
                for t in tokenize.generate_tokens(io.StringIO(source).readline)]
    except Exception:   # TokenError, IndentationError, null bytes, too deep ...
        return _lex(source)


def normalised(source, skip_lines=frozenset()):
    """[(token, line)]: the source as compared, with the line each token is on.

    skip_lines: line numbers whose tokens are left out (the template's).
    A logical line of nothing but strings (a docstring, a string used as a
    comment) is dropped; the end of a statement is ``;``.
    """
    out, statement, prev = [], [], None

    def end_statement():
        if statement and any(t != "S" for t, _ in statement):
            out.extend(statement)
            out.append((";", statement[-1][1]))
        statement.clear()

    for typ, text, line in _raw_tokens(source):
        if typ == tokenize.NEWLINE or (typ == tokenize.OP and text == ";"):
            end_statement()
            prev = None
            continue
        if typ in _SKIP:
            continue
        after_dot, prev = prev == ".", text
        if line in skip_lines:
            continue
        if typ == tokenize.NAME:
            tok = text if (keyword.iskeyword(text) or after_dot or text in _BUILTINS) else "V"
        elif typ == tokenize.NUMBER:
            tok = "N"
        elif typ == tokenize.STRING:
            tok = "S"
        else:
            tok = text
        statement.append((tok, line))
    end_statement()
    return out


_IDS = {}


def _token_id(tok):
    """A stable number per token text (Python's str hash changes per process)."""
    n = _IDS.get(tok)
    if n is None:
        n = _IDS[tok] = zlib.crc32(tok.encode("utf-8", "surrogatepass"))
    return n


def kgrams(tokens):
    """[(hash, first line, last line)] of every run of K consecutive tokens."""
    ids = [_token_id(t) for t, _ in tokens]
    return [(hash(tuple(ids[i:i + K])), tokens[i][1], tokens[i + K - 1][1])
            for i in range(len(ids) - K + 1)]


def winnow(hashes, window=WINDOW):
    """Indices of the fingerprints: the smallest hash of every window of
    ``window`` consecutive hashes (the rightmost on ties), each position once."""
    chosen, last, n = [], -1, len(hashes)
    for start in range(max(1, n - window + 1) if n else 0):
        best = start
        for j in range(start + 1, min(start + window, n)):
            if hashes[j] <= hashes[best]:
                best = j
        if best != last:
            chosen.append(best)
            last = best
    return chosen


def fingerprints(tokens):
    """The set of winnowed fingerprints of one run of tokens."""
    hashes = [h for h, _, _ in kgrams(tokens)]
    return {hashes[i] for i in winnow(hashes)}


# ----------------------------------------------------------------------------
# What a student wrote


_text = grade._text   # a cell's source as nbformat allows it (a string or a list of them)


@dataclass
class Piece:
    """A stretch of an answer cell compared as one token sequence: a top-level
    statement (a function, say), or the whole cell when it does not parse."""
    function: str        # the graded function it counts for
    grade_id: str        # its cell
    first: int           # its lines, 1-based, inclusive
    last: int
    tokens: list         # [(token, line)], the template's lines left out


def _template_lines(source, stub):
    """Line numbers of ``source`` that are lines of the released template."""
    own = {line.strip() for line in stub.splitlines() if line.strip()}
    return frozenset(n for n, line in enumerate(source.splitlines(), start=1)
                     if line.strip() in own)


def pieces(source, grade_id, cell_function, graded, stub=""):
    """The pieces of one answer cell (see ``Piece``)."""
    source = source[:MAX_SOURCE]
    skip = _template_lines(source, stub)
    tokens = normalised(source, skip)
    try:
        body = ast.parse(source).body
    except Exception:   # SyntaxError, null bytes, too deep (RecursionError) ...
        body = None
    if not body:
        nlines = source.count("\n") + 1
        return [Piece(cell_function, grade_id, 1, nlines, tokens)] if tokens else []
    spans = []
    for node in body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        name = getattr(node, "name", None)
        spans.append((first, node.end_lineno, name if name in graded else cell_function))
    starts = [s[0] for s in spans]
    out = {}
    for tok, line in tokens:
        k = bisect.bisect_right(starts, line) - 1
        if k < 0 or line > spans[k][1]:
            k = max(k, 0)   # a token outside every statement (cannot happen): the nearest
        out.setdefault(k, []).append((tok, line))
    return [Piece(spans[k][2], grade_id, spans[k][0], spans[k][1], toks)
            for k, toks in sorted(out.items())]


def answer_pieces(sources, material):
    """Every piece of a notebook's answer cells ({grade_id: source})."""
    found = []
    for gid, source in sources.items():
        found += pieces(source, gid, material.cell_functions[gid], material.graded,
                        material.stubs.get(gid, ""))
    return found


def units(found, removed=frozenset()):
    """{graded function: fingerprints}, less ``removed``; functions left empty are dropped."""
    per = {}
    for p in found:
        per.setdefault(p.function, set()).update(fingerprints(p.tokens))
    return {f: frozenset(s - removed) for f, s in per.items() if s - removed}


# ----------------------------------------------------------------------------
# What every notebook shares, and the reference

_FENCE = re.compile(r"^(`{3,}|~{3,})[ \t]*([^\n]*)\n(.*?)^\1[ \t]*$", re.S | re.M)
_CODE_INFO = re.compile(r"^(?:$|python\b|py\b|ipython\d*\b|\{code-cell\}|\{code-block\}\s*python)")


def code_blocks(markdown):
    """The Python code of the fenced blocks of a Markdown text."""
    return [m.group(3) for m in _FENCE.finditer(markdown) if _CODE_INFO.match(m.group(2).strip())]


@dataclass
class Material:
    """What an assignment's comparisons take from the course."""
    assignment: str
    stubs: dict              # answer grade_id -> the released template of the cell
    cell_functions: dict     # answer grade_id -> the graded function it holds
    graded: frozenset        # the graded functions
    shared: frozenset        # every k-gram of what every notebook shares
    reference: dict          # answer grade_id -> the reference answer
    reference_kgrams: frozenset      # every k-gram of the reference answers, less shared
    reference_units: dict            # graded function -> its fingerprints, less shared
    reference_pieces: list


def material(aid, book=None):
    """The ``Material`` of assignment ``aid`` (book: the folder of the chapters)."""
    import nbformat
    a = course.load(aid)
    release = nbformat.read(course.EXERCISES / aid / f"{aid}.ipynb", as_version=4)
    answers = [c for c in a.cells if c.kind == "answer"]
    cell_functions = {c.grade_id: c.functions[0] for c in answers}
    stubs, shared_texts = {}, []
    for cell in release.cells:
        gid = course.grade_id(cell)
        text = _text(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            shared_texts += code_blocks(text)
        elif gid in cell_functions:
            stubs[gid] = text
            shared_texts.append(text)
        elif cell.get("cell_type") == "code":
            shared_texts.append(text)   # given, set-up, checks, tests, demo cells
    book = Path(book) if book is not None else course.ROOT / "book"
    for page in sorted(book.glob("*.md")):
        shared_texts += code_blocks(page.read_text(encoding="utf-8"))
    shared = frozenset(h for text in shared_texts for h, _, _ in kgrams(normalised(text)))
    markers = {"### BEGIN SOLUTION", "### END SOLUTION"}
    reference = {c.grade_id: "\n".join(line for line in c.source.splitlines()
                                       if line.strip() not in markers) for c in answers}
    graded = frozenset(a.functions)
    m = Material(aid, stubs, cell_functions, graded, shared, reference, frozenset(), {}, [])
    m.reference_pieces = answer_pieces(reference, m)
    m.reference_kgrams = frozenset(h for p in m.reference_pieces for h, _, _ in kgrams(p.tokens)
                                   if h not in shared)
    m.reference_units = units(m.reference_pieces, shared)
    return m


# ----------------------------------------------------------------------------
# Submissions


@dataclass
class Answer:
    """One notebook's answers."""
    label: str           # the student id; "<term>/<id>" for an earlier term's
    term: str            # "" for this class, else the earlier term's name
    sources: dict        # answer grade_id -> source as submitted
    raw: dict            # graded function -> fingerprints, less what all notebooks share
    own: dict = field(default_factory=dict)   # ... and less the reference and idioms

    def all(self, which="own"):
        return frozenset().union(*getattr(self, which).values())


def read_answers(nb, m):
    """{answer grade_id: source} of a submitted notebook (the last copy of a
    duplicated cell, as the grader takes it)."""
    found = {}
    cells = nb.get("cells") if isinstance(nb, dict) else None
    for cell in (cells if isinstance(cells, list) else [])[:grade.MAX_CODE_CELLS * 2]:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            gid = course.grade_id(cell)
            if gid in m.cell_functions:
                found[gid] = _text(cell.get("source", ""))
    return found


@dataclass
class Found:
    """The notebooks of one assignment in a submissions folder."""
    answers: list
    unreadable: list     # labels of notebooks that could not be read


_MATERIAL = None   # a reading process's Material


def _set_material(m):
    global _MATERIAL
    _MATERIAL = m


def _read(job, m=None):
    """(label, term, sources, fingerprints per function), or sources None: unreadable."""
    label, term, path = job
    m = m or _MATERIAL
    nb, _ = grade.read_submission(path)
    if nb is None:
        return label, term, None, None
    sources = read_answers(nb, m)
    return label, term, sources, units(answer_pieces(sources, m), m.shared)


def collect(submitted, m, term="", jobs=1):
    """The answers to assignment ``m`` in a folder laid out as the grader's
    (``SUBMITTED/<student>/<assignment>/<assignment>.ipynb``, or an nbgrader
    course root), read by ``jobs`` processes."""
    from .classroom import find_submissions
    from .nbgrader_course import submitted_folder
    work = [(f"{term}/{s.student}" if term else s.student, term, Path(s.path))
            for s in find_submissions(submitted_folder(submitted), {m.assignment})
            if s.assignment == m.assignment and s.path is not None]
    if jobs > 1 and len(work) >= PARALLEL_MIN * jobs:   # tokenising is the cost: spread it
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(jobs, initializer=_set_material, initargs=(m,)) as pool:
            read = list(pool.map(_read, work, chunksize=max(1, len(work) // (4 * jobs))))
    else:
        read = [_read(job, m) for job in work]
    answers = [Answer(label, term, sources, raw) for label, term, sources, raw in read
               if sources is not None]
    return Found(answers, [label for label, _, sources, _ in read if sources is None])


# ----------------------------------------------------------------------------
# Scores


def score(a, b, shared):
    """Mean of the two containments of fingerprint sets of sizes a and b sharing ``shared``."""
    return 0.0 if not (a and b) else (shared / a + shared / b) / 2


@dataclass
class Pair:
    assignment: str
    a: str
    b: str
    kind: str            # "class", "earlier term" or "reference"
    score: float
    size_a: int
    size_b: int
    shared: int
    functions: list      # [(graded function, score)], best first


def function_scores(ua, ub):
    """[(function, score)] of the graded functions both answered with enough
    fingerprints, best first."""
    found = []
    for f in sorted(ua.keys() & ub.keys()):
        a, b = ua[f], ub[f]
        if len(a) >= MIN_FUNCTION_FINGERPRINTS and len(b) >= MIN_FUNCTION_FINGERPRINTS:
            n = len(a & b)
            if n:
                found.append((f, score(len(a), len(b), n)))
    return sorted(found, key=lambda x: (-x[1], x[0]))


def owners(u):
    """{fingerprint: (graded functions holding it)} of units ``u``."""
    found = {}
    for f, s in u.items():
        for h in s:
            found[h] = found.get(h, ()) + (f,)
    return found


def shared_function_scores(ua, ub, shared, owner_a):
    """``function_scores(ua, ub)``, from the fingerprints the two notebooks
    share (``shared``) and ``owners(ua)``: the work grows with what they share."""
    per = Counter()
    for h in shared:
        for f in owner_a[h]:
            if h in ub.get(f, ()):
                per[f] += 1
    found = [(f, score(len(ua[f]), len(ub[f]), n)) for f, n in per.items()
             if len(ua[f]) >= MIN_FUNCTION_FINGERPRINTS and len(ub[f]) >= MIN_FUNCTION_FINGERPRINTS]
    return sorted(found, key=lambda x: (-x[1], x[0]))


def reference_pair(answer, m):
    """The answer against the reference answers of the functions it answered."""
    mine = answer.all("raw")
    if len(mine) < MIN_FINGERPRINTS:
        return None
    ref = {f: s for f, s in m.reference_units.items() if f in answer.raw}
    theirs = frozenset().union(*ref.values())
    n = len(mine & theirs)
    if not n:
        return None
    return Pair(m.assignment, answer.label, REFERENCE, "reference",
                score(len(mine), len(theirs), n), len(mine), len(theirs), n,
                function_scores(answer.raw, ref))


def common_limit(n):
    """Fragments found in more notebooks than this are idioms, left out."""
    return max(COMMON_MIN, math.ceil(COMMON_SHARE * n))


@dataclass
class Comparison:
    """The pairs of a class (``class_pairs``)."""
    pairs: list          # [Pair] with a score of LIST_FLOOR or more
    below: int           # pairs with a score above 0 but under LIST_FLOOR
    best: list           # each notebook's highest score (None: too little to compare)
    common: frozenset    # the idioms left out
    limit: int           # ... found in more notebooks than this


def class_pairs(answers, m, n_class):
    """Pairs among ``answers[:n_class]`` (this class) and between them and
    ``answers[n_class:]`` (earlier terms).  Sets ``Answer.own``.

    The pairs scored under LIST_FLOOR are only counted (and in each
    notebook's highest score), so memory grows with the notebooks and the
    pairs worth reading, not with every pair that shares one fragment.
    """
    everyone = [a.all("raw") - m.reference_kgrams for a in answers]
    df = Counter(h for s in everyone for h in s)
    limit = common_limit(len([s for s in everyone if s]))
    common = frozenset(h for h, c in df.items() if c > limit)
    removed = m.reference_kgrams | common
    for a in answers:
        a.own = {f: s - removed for f, s in a.raw.items() if s - removed}
    sets = [a.all() for a in answers]
    sets = [s if len(s) >= MIN_FINGERPRINTS else frozenset() for s in sets]
    index = {}
    for i, s in enumerate(sets):
        for h in s:
            index.setdefault(h, []).append(i)   # in order of i: each list is sorted
    pairs, below = [], 0
    best = [0.0 if s else None for s in sets]
    for i in range(n_class):
        if not sets[i]:
            continue
        counts = Counter()
        for h in sets[i]:
            p = index[h]
            if len(p) > 1:
                counts.update(p[bisect.bisect_right(p, i):])
        a, mine = answers[i], None
        for j, n in counts.items():
            value = score(len(sets[i]), len(sets[j]), n)
            best[i], best[j] = max(best[i], value), max(best[j], value)
            if value < LIST_FLOOR:
                below += 1
                continue
            b = answers[j]
            mine = mine or owners(a.own)
            functions = shared_function_scores(a.own, b.own, sets[i] & sets[j], mine)
            pairs.append(Pair(m.assignment, a.label, b.label,
                              "earlier term" if b.term else "class",
                              value, len(sets[i]), len(sets[j]), n, functions))
    return Comparison(pairs, below, best, common, limit)


# ----------------------------------------------------------------------------
# The report's data


@dataclass
class Line:
    number: int
    text: str
    similar: bool        # part of a fragment the other side has too


@dataclass
class Side:
    label: str
    lines: list          # [Line]
    cut: int = 0         # lines not shown


@dataclass
class FunctionView:
    function: str
    score: object        # float, or None when too short to score on its own
    left: Side
    right: Side


@dataclass
class PairView:
    pair: Pair
    anchor: str
    functions: list      # [FunctionView], most similar first
    more: int = 0        # functions with similar lines not shown


@dataclass
class Bin:
    low: float
    high: float
    count: int


@dataclass
class AssignmentReport:
    assignment: str
    compared: int        # notebooks with enough code of their own
    too_little: int      # untouched or nearly empty notebooks
    unreadable: int
    earlier: int         # earlier terms' notebooks compared against
    common_limit: int
    common: int          # idioms left out
    pairs: list          # [Pair] of students, best first, from LIST_FLOOR on
    below: int           # pairs of students under LIST_FLOOR (not listed)
    reference: list      # [Pair] against the reference, best first
    histogram: list      # [Bin] of each student's highest score against a classmate
    shown: list          # [PairView]
    threshold: float = THRESHOLD

    @property
    def flagged(self):
        return [p for p in self.pairs if p.score >= self.threshold]

    @property
    def reference_flagged(self):
        return [p for p in self.reference if p.score >= self.threshold]

    def anchor(self, pair):
        """The id of the pair's side-by-side view, or "" when it is not shown."""
        return next((v.anchor for v in self.shown if v.pair is pair), "")


def _side(label, found, function, highlight, stub_lines, sources):
    lines = []
    for p in sorted((p for p in found if p.function == function),
                    key=lambda p: (p.grade_id, p.first)):
        text = sources[p.grade_id][:MAX_SOURCE].splitlines()
        skip = stub_lines.get(p.grade_id, frozenset())
        for n in range(p.first, min(p.last, len(text)) + 1):
            blank = not text[n - 1].strip()
            if n not in skip and not (blank and (not lines or not lines[-1].text.strip())):
                lines.append(Line(n, text[n - 1], (p.grade_id, n) in highlight))
    return Side(label, lines[:MAX_LINES], max(0, len(lines) - MAX_LINES))


def _similar_lines(found, other_hashes):
    """{(grade_id, line)} of the k-grams of ``found`` that ``other_hashes`` holds."""
    marked = set()
    for p in found:
        for h, first, last in kgrams(p.tokens):
            if h in other_hashes:
                marked.update((p.grade_id, n) for n in range(first, last + 1))
    return marked


def pair_view(pair, left, right, m, removed, anchor):
    """The two answers of a pair side by side, per function, similar lines marked.

    left/right: (label, pieces, sources); removed: k-grams not counted.
    """
    hashes = []
    for _, found, _ in (left, right):
        hashes.append({h for p in found for h, _, _ in kgrams(p.tokens)} - removed)
    common = hashes[0] & hashes[1]
    marks = [_similar_lines(left[1], common), _similar_lines(right[1], common)]
    stub_lines = [{g: _template_lines(s[:MAX_SOURCE], m.stubs.get(g, "")) for g, s in side[2].items()}
                  for side in (left, right)]
    scored = dict(pair.functions)
    names = sorted({p.function for p in left[1]} | {p.function for p in right[1]},
                   key=lambda f: (-scored.get(f, -1.0), f))
    views = []
    for f in names:
        l = _side(left[0], left[1], f, marks[0], stub_lines[0], left[2])
        r = _side(right[0], right[1], f, marks[1], stub_lines[1], right[2])
        if any(x.similar for x in l.lines) or any(x.similar for x in r.lines):
            views.append(FunctionView(f, scored.get(f), l, r))
    return PairView(pair, anchor, views[:MAX_FUNCTIONS], max(0, len(views) - MAX_FUNCTIONS))


def histogram(values):
    counts = [0] * BINS
    for v in values:
        counts[min(BINS - 1, int(v * BINS))] += 1
    return [Bin(k / BINS, (k + 1) / BINS, c) for k, c in enumerate(counts)]


def analyse(aid, submitted, against=(), book=None, threshold=THRESHOLD, jobs=1):
    """The ``AssignmentReport`` of one assignment."""
    m = material(aid, book)
    mine = collect(submitted, m, jobs=jobs)
    earlier, labels = [], set()
    for folder in against:
        from .classroom import student_id
        term = student_id(Path(folder).resolve().name)[0]
        while term in labels:
            term += "+"
        labels.add(term)
        earlier += collect(folder, m, term, jobs).answers
    answers = mine.answers + earlier
    n = len(mine.answers)
    refs = [r for r in (reference_pair(a, m) for a in mine.answers) if r]
    c = class_pairs(answers, m, n)
    pairs = c.pairs
    order = lambda p: (-p.score, p.a, p.b)
    pairs.sort(key=order)
    refs.sort(key=order)
    best = [b for b in c.best[:n] if b is not None]

    by_label = {a.label: a for a in answers}
    removed = m.shared | m.reference_kgrams | c.common

    def side(label):
        if label == REFERENCE:
            return label, m.reference_pieces, m.reference
        a = by_label[label]
        return label, answer_pieces(a.sources, m), a.sources

    shown = []
    flagged = [p for p in refs + pairs if p.score >= threshold]
    flagged.sort(key=order)
    for k, p in enumerate(flagged[:MAX_SHOWN]):
        cut = m.shared if p.kind == "reference" else removed
        shown.append(pair_view(p, side(p.a), side(p.b), m, cut, f"{aid}-pair-{k + 1}"))
    return AssignmentReport(aid, len(best), n - len(best), len(mine.unreadable), len(earlier),
                            c.limit, len(c.common), pairs, c.below, refs, histogram(best),
                            shown, threshold)


# ----------------------------------------------------------------------------
# Writing


def _csv_field(value):
    """Text a spreadsheet shows as text (not a formula)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def csv_text(reports):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in reports:
        for p in r.reference + r.pairs:
            top = "; ".join(f"{f} {s:.2f}" for f, s in p.functions[:TOP_FUNCTIONS])
            w.writerow([_csv_field(v) for v in (p.assignment, p.a, p.b, p.kind, f"{p.score:.3f}",
                                                p.size_a, p.size_b, p.shared, top)])
    return buf.getvalue()


def html_text(reports, against=()):
    import jinja2
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("similarity.html.j2").render(
        reports=reports, K=K, T=K + WINDOW - 1, MIN_FINGERPRINTS=MIN_FINGERPRINTS,
        MIN_FUNCTION_FINGERPRINTS=MIN_FUNCTION_FINGERPRINTS, MAX_SHOWN=MAX_SHOWN,
        MAX_LISTED=MAX_LISTED, against=bool(against), COMMON_SHARE=COMMON_SHARE,
        COMMON_MIN=COMMON_MIN,
        LIST_FLOOR=LIST_FLOOR)


def _write(path, text):
    """Replace ``path`` whole (a link there is replaced, never followed)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise OSError(f"{path} is a folder (a student's of that name?): the report is not written")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace", newline="") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # as any file written here (mkstemp makes 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(submitted, out, assignments=None, against=(), book=None, threshold=THRESHOLD, jobs=1):
    """Write ``out/similarity.csv`` and ``out/similarity.html``; return the reports.

    assignments: ids to compare (default: every assignment of the course
    with a submission); jobs: processes reading the notebooks.
    """
    ids = list(assignments) if assignments else course.assignments()
    reports = [analyse(aid, submitted, against, book, threshold, jobs) for aid in ids]
    if not assignments:
        reports = [r for r in reports if r.compared or r.too_little or r.unreadable]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / CSV_NAME, csv_text(reports))
    _write(out / HTML_NAME, html_text(reports, against))
    return reports
