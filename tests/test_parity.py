"""One verdict: every visible check passes in the learner's notebook exactly
when it passes in the grader.

Per assignment, a set of implementations (the reference, the untouched
stubs, the demo class's plausible bugs in groups of one bug per function,
and a few that lean on the differences between a notebook and the grader:
warnings, printing, randomness) runs twice: in a Jupyter kernel as a learner
runs it (``autograder.learner``, demo cells left out) and through the grader.
Any check whose verdict differs, or a test cell that stops in one and not
the other, fails the test.
"""
import pytest

from autograder import course, demo, grade, learner
from tests.conftest import filled, release

# Implementations that behave differently in a notebook and a sandbox unless
# the grader takes care: (answer cell, reference text, replacement).
EXTRAS = {
    "dcl_backprop": [
        [("answer_sigmoid", "    z = np.asarray(z, dtype=np.float64)\n",  # naive: overflows
          "    return 1 / (1 + np.exp(-np.asarray(z, dtype=np.float64)))\n")],
        [("answer_relu", "    return np.maximum(", "    print('relu called')\n    return np.maximum("),
         ("answer_softmax", "    z = np.asarray(z, dtype=np.float64)\n",
          "    z = np.asarray(z, dtype=np.float64) + np.random.rand() * 1e-3\n")],
    ],
    "lstm": [  # changes dy in place: the checks put it back, in the kernel and in the grader
        [("answer_lstm_backward", "        delta_y = dy[t] + dy_prev\n",
          "        dy[t] += dy_prev\n        delta_y = dy[t]\n")],
    ],
}


def bug_groups(bugs):
    """The bugs in groups holding at most one bug per answer cell."""
    groups = []
    for bug in bugs:
        for g in groups:
            if all(b[0] != bug[0] for b in g):
                g.append(bug)
                break
        else:
            groups.append([bug])
    return groups


def implementations(aid):
    out = [("reference", filled(aid)), ("stubs", release(aid))]
    for n, group in enumerate(bug_groups(demo.BUGS.get(aid, [])) + EXTRAS.get(aid, [])):
        out.append((f"bugs {n + 1}", demo._introduce(filled(aid), group)))
    return out


@pytest.mark.parametrize("aid", course.assignments())
def test_notebook_and_grader_give_every_visible_check_the_same_verdict(aid):
    a = course.load(aid)
    compared = 0
    for name, nb in implementations(aid):
        seen = learner.run(learner.without_demos(nb))
        verdicts, stopped = learner.grader_verdicts(grade.grade_notebook(a, nb, seed=0))
        assert not seen.errors or name != "reference", seen.errors
        assert sorted(seen.stopped) == sorted(stopped), (name, seen.stopped, stopped)
        differ = {k: (seen.verdicts.get(k), verdicts.get(k))
                  for k in set(seen.verdicts) | set(verdicts)
                  if seen.verdicts.get(k) != verdicts.get(k)}
        assert not differ, (name, differ)
        if name == "reference":
            assert verdicts and all(verdicts.values()), name
        if name == "stubs":
            assert verdicts and not any(verdicts.values()), name
        compared += len(verdicts)
    print(f"{aid}: {len(implementations(aid))} implementations, {compared} verdicts compared")


def test_visible_test_cells_are_the_learners_cells():
    """What the grader runs for the visible checks is, character for
    character, the test cell of the learner's notebook."""
    for aid in course.assignments():
        a = course.load(aid)
        cells = {course.grade_id(c): c.source for c in release(aid).cells}
        for t in a.tests:
            assert cells[t.grade_id] == course.visible_source(t), (aid, t.grade_id)


def test_bug_groups_keep_one_bug_per_cell():
    bugs = [("a", "1", "2"), ("a", "3", "4"), ("b", "5", "6")]
    assert bug_groups(bugs) == [[bugs[0], bugs[2]], [bugs[1]]]
