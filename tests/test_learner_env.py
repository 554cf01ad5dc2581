"""A learner who has only the site can run the exercises.

The Get started page serves learner/requirements.txt: the notebooks' own
imports and JupyterLab, with everything they need, pinned to the versions of
constraints.txt.  Here a fresh virtual environment is made from that file
alone (python -m venv, pip install -r; pip's cache makes it quick after the
first time), and every exercise notebook, filled with the reference
solutions, runs top to bottom in a kernel of that environment, in an empty
folder, with every visible check printing ✓ and none ✗.

The tests that build the environment are marked ``learner_env``: they run by
default and in CI; deselect them with ``-m "not learner_env"``.
"""
import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from autograder import course
from tests.conftest import ROOT, filled, release

REQUIREMENTS = ROOT / "learner" / "requirements.txt"
# Imported by the notebooks only when the grader runs them (the checks' channel
# to the grader): never in a learner's kernel.
GRADER_ONLY = {"autograder"}


def _name(requirement):
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", requirement).lower()


def _pins(text):
    """[(name, version)] of the `name==version` lines of a requirements file."""
    return [(_name(m.group(1)), m.group(2))
            for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", text, re.M)]


def _notebook_imports():
    """Top-level modules the exercise notebooks import, apart from the standard library."""
    found = set()
    for aid in course.assignments():
        for cell in release(aid).cells:
            if cell.cell_type != "code":
                continue
            source = "\n".join(line for line in cell.source.splitlines()
                               if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - GRADER_ONLY


def test_learner_requirements_are_the_notebooks_imports_and_jupyterlab_pinned_like_the_course():
    text = REQUIREMENTS.read_text()
    pins = _pins(text)
    assert len({n for n, _ in pins}) == len(pins), "a package is pinned twice"
    # every line is a pin: no ranges, no -e, no -r of a file the site does not serve
    for line in text.splitlines():
        assert not line.strip() or line.startswith("#") or _pins(line), f"not a pin: {line}"
    constraints = dict(_pins((ROOT / "constraints.txt").read_text()))
    wrong = [f"{n}=={v} (constraints.txt: {constraints.get(n)})"
             for n, v in pins if constraints.get(n) != v]
    assert not wrong, "learner/requirements.txt differs from constraints.txt:\n" + "\n".join(wrong)
    # The first block of pins is what the learner asks for; the rest is what it needs.
    direct = _pins(next(block for block in re.split(r"\n\s*\n", text) if _pins(block)))
    distributions = importlib.metadata.packages_distributions()
    wanted = {_name(distributions[module][0]) for module in _notebook_imports()} | {"jupyterlab"}
    assert {n for n, _ in direct} == wanted, \
        f"the first block of learner/requirements.txt should be {sorted(wanted)}"


@pytest.fixture(scope="module")
def learner_python(tmp_path_factory):
    """The python of a fresh virtual environment made from learner/requirements.txt alone."""
    venv = tmp_path_factory.mktemp("learner") / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_CONSTRAINT",
                                                             "PIP_REQUIREMENT", "VIRTUAL_ENV")}
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(REQUIREMENTS)],
        capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, f"pip install -r learner/requirements.txt failed:\n{proc.stderr[-3000:]}"
    print(f"\nlearner environment made in {time.monotonic() - t:.0f} s")
    return python


def _size_mb(folder):
    return sum(f.stat().st_size for f in Path(folder).rglob("*")
               if f.is_file() and not f.is_symlink()) / 1e6


def _installed(python):
    proc = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze",
                           "--disable-pip-version-check"], capture_output=True, text=True, check=True)
    return _pins(proc.stdout)


@pytest.mark.learner_env
def test_learner_environment_holds_exactly_the_pinned_packages(learner_python):
    installed = dict(_installed(learner_python))
    pinned = dict(_pins(REQUIREMENTS.read_text()))
    extra = {n: v for n, v in installed.items() if n not in pinned and n not in ("pip", "setuptools")}
    assert not extra, f"installed but not pinned (pin them in learner/requirements.txt): {extra}"
    assert {n: installed.get(n) for n in pinned} == pinned
    check = subprocess.run([str(learner_python), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    venv = learner_python.parent.parent
    full = Path(sys.prefix)
    print(f"\nlearner environment: {len(installed)} packages, {_size_mb(venv):.0f} MB; "
          f"the course's own ({full.name}): {len(_installed(Path(sys.executable)))} packages, "
          f"{_size_mb(full):.0f} MB")


def _check_patterns(nb):
    """A regular expression for the name of every `with check(...)` of the visible test cells."""
    patterns = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if not isinstance(node, ast.With):
                continue
            for item in node.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "check":
                    name = call.args[0]
                    if isinstance(name, ast.Constant):
                        patterns.append(re.escape(name.value))
                    else:   # an f-string: its fixed parts, anything between them
                        patterns.append("".join(re.escape(p.value) if isinstance(p, ast.Constant)
                                                else ".+?" for p in name.values))
    return patterns


@pytest.mark.learner_env
@pytest.mark.parametrize("aid", course.assignments())
def test_exercise_passes_every_visible_check_in_the_learner_environment(learner_python, aid,
                                                                       tmp_path):
    kernels = tmp_path / "kernels"
    spec = kernels / "learner"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        '{"argv": ["%s", "-m", "ipykernel_launcher", "-f", "{connection_file}"], '
        '"display_name": "learner", "language": "python"}' % learner_python)
    km = KernelManager(kernel_name="learner",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    work = tmp_path / "work"   # an empty folder: nothing of the course beside the notebook
    work.mkdir()
    nb = filled(aid)
    # First, where the kernel runs and that the course's own packages are out of its reach.
    nb.cells.insert(0, nbformat.v4.new_code_cell(
        "import importlib.util, sys\n"
        "print('learner kernel:', sys.prefix)\n"
        "assert not [m for m in ('solutions', 'autograder') if importlib.util.find_spec(m)]"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    t = time.monotonic()
    try:
        NotebookClient(nb, km=km, timeout=600, allow_errors=False,
                       resources={"metadata": {"path": str(work)}}).execute(env=env)
    finally:   # a kernel manager handed to nbclient is ours to stop
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert f"learner kernel: {learner_python.parent.parent}" in printed
    passed = [line[2:] for line in printed.splitlines() if line.startswith("✓ ")]
    failed = [line for line in printed.splitlines() if line.startswith("✗")]
    assert not failed, "\n".join(failed)
    patterns = _check_patterns(release(aid))
    assert patterns, f"{aid}: no visible check found"
    silent = [p for p in patterns if not any(re.fullmatch(p, name) for name in passed)]
    assert not silent, f"{aid}: visible checks that printed no ✓: {silent}"
    print(f"\n{aid}: {len(passed)} visible checks passed in the learner environment "
          f"({time.monotonic() - t:.0f} s)")
