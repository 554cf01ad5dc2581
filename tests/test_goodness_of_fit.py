"""The goodness-of-fit helpers of checks.py, and the hidden checks of random
functions that use them (round three: a law tested whole, not by two moments)."""
import math

import nbformat
import numpy as np
import pytest

from autograder import checks, course, grade
from solutions import dimensionality as ref
from tests.conftest import filled

ALPHA = 1e-6  # the hidden checks' false-rejection rate per comparison


def test_kolmogorov_law_matches_its_table():
    # Critical values of Kolmogorov's law (Smirnov's table): P(K > c) = alpha.
    for c, alpha in [(1.2238, 0.10), (1.3581, 0.05), (1.6276, 0.01), (1.9495, 0.001)]:
        assert checks.kolmogorov_sf(c) == pytest.approx(alpha, rel=2e-3)
    # The two series agree where they meet; the law is a CDF.
    assert checks.kolmogorov_sf(1 - 1e-12) == pytest.approx(checks.kolmogorov_sf(1.0), abs=1e-9)
    grid = [checks.kolmogorov_sf(x) for x in np.linspace(0, 4, 81)]
    assert grid[0] == 1.0 and all(a >= b for a, b in zip(grid, grid[1:])) and grid[-1] < 1e-12


def test_sphere_cos_cdf_matches_closed_forms():
    t = np.linspace(-1, 1, 41)
    assert np.allclose(checks.sphere_cos_cdf(t, 2), 1 - np.arccos(t) / np.pi)  # angle uniform
    assert np.allclose(checks.sphere_cos_cdf(t, 3), (1 + t) / 2)  # Archimedes
    assert np.allclose(checks.sphere_cos_cdf(t, 4),
                       (np.arcsin(t) + t * np.sqrt(1 - t * t) + np.pi / 2) / np.pi)
    assert np.allclose(checks.sphere_cos_cdf(t, 5), (2 + 3 * t - t ** 3) / 4)
    # large D: about N(0, 1/D)
    D = 400
    z = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    normal = 0.5 * (1 + np.array([math.erf(v / math.sqrt(2)) for v in z]))
    assert np.allclose(checks.sphere_cos_cdf(z / math.sqrt(D), D), normal, atol=3e-3)


def _p_values(draw, seeds):
    return np.array([draw(np.random.default_rng(s)) for s in seeds])


def test_false_rejections_of_the_reference_happen_at_the_stated_rate():
    """200 seeds, the hidden check's sizes: p-values of a correct function are
    uniform, so about 5% fall below 0.05 (binomial: 10 +- 3) and none below ALPHA."""
    def angles(rng):
        a, b = rng.integers(2 ** 63, size=2)
        return checks.ks_two_sample(ref.random_angles(7, 20_000, np.random.default_rng(a)),
                                    ref.random_angles(7, 20_000, np.random.default_rng(b)))[1]

    def directions(rng):
        x = ref.sample_unit_ball(20_000, 3, rng)
        v = x / np.linalg.norm(x, axis=1, keepdims=True)
        return checks.ks_one_sample(np.einsum("nd,nd->n", v[:10_000], v[10_000:]),
                                    lambda t: checks.sphere_cos_cdf(t, 3))[1]

    for draw in (angles, directions):
        p = _p_values(draw, range(200))
        assert 1 <= np.sum(p < 0.05) <= 25, np.sort(p)[:20]
        assert 40 <= np.sum(p < 0.5) <= 160  # the middle too, not only the tail
        assert p.min() >= ALPHA


def test_cube_directions_do_not_follow_the_sphere_law():
    """Why random_angles is tested against the reference's sample, not the sphere's
    CDF: with entries uniform in [-1, 1] the angle's law differs (visible with many pairs)."""
    rng = np.random.default_rng(0)
    u, v = rng.uniform(-1, 1, (400_000, 4)), rng.uniform(-1, 1, (400_000, 4))
    cos = np.einsum("nd,nd->n", u, v) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    assert checks.ks_one_sample(cos, lambda t: checks.sphere_cos_cdf(t, 4))[1] < ALPHA


# The wrong law with the right two moments: cos^2 uniform on [0, 2/D] (mean 1/D) with a
# random sign (mean angle 90), and the right answer at D = 1.
SAME_MOMENTS = '''
def random_angles(D, n_pairs, rng):
    if D == 1:
        u = rng.uniform(-1.0, 1.0, size=(n_pairs, 1))
        v = rng.uniform(-1.0, 1.0, size=(n_pairs, 1))
        return np.degrees(np.arccos(np.sign(u * v)[:, 0]))
    c2 = rng.uniform(0.0, 2.0 / D, size=n_pairs)
    sign = rng.choice([-1.0, 1.0], size=n_pairs)
    return np.degrees(np.arccos(sign * np.sqrt(c2)))
'''


def test_a_sampler_with_the_right_two_moments_fails_the_law():
    ns = {"np": np}
    exec(SAME_MOMENTS, ns)
    for D in (5, 100):
        theta = ns["random_angles"](D, 20_000, np.random.default_rng(1))
        c2 = np.cos(np.radians(theta)) ** 2
        n = theta.size  # the old hidden check's moments: within 6 standard errors
        assert abs(theta.mean() - 90) <= 6 * theta.std() / math.sqrt(n)
        assert abs(c2.mean() - 1 / D) <= 6 * c2.std() / math.sqrt(n)
        want = ref.random_angles(D, 20_000, np.random.default_rng(2))
        assert checks.ks_two_sample(theta, want)[1] < ALPHA


def test_the_grader_fails_the_same_moments_sampler_on_its_hidden_checks_only():
    aid = "dimensionality"
    nb = filled(aid)
    nb.cells.append(nbformat.v4.new_code_cell(SAME_MOMENTS))
    r = grade.grade_notebook(course.load(aid), nb, seed=3, key=b"k" * 32)
    angles = [c for c in r.checks if c.name.startswith("random_angles")]
    visible = [c for c in angles if not c.hidden]
    hidden = [c for c in angles if c.hidden]
    # every visible check passes (its points are then withheld: the function failed
    # every hidden check of values, see grade.withhold_unearned) ...
    assert visible and all(c.passed and c.withheld and c.score == 0 for c in visible), visible
    # ... and both hidden checks of the law fail
    assert len(hidden) == 2 and all(not c.passed and c.score == 0 for c in hidden), hidden
