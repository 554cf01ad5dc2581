"""Tests of solutions.dimensionality (chapter 4: the curse of dimensionality).

Oracles: closed forms done by hand (V_1 = 2, V_2 = pi, ...; 1 - 0.99^D),
the recursion V_D = 2 pi / D V_(D-2), geometry written with vectors, slow
loop-based re-implementations (cells as a Python set of tuples, k-NN with
sorted lists), and Monte Carlo checks with fixed seeds.

Statistical tolerances are k standard errors, with the standard error either
known in closed form (binomial sqrt(p (1 - p) / n)) or estimated from the
sample (std / sqrt(n)).  k = 5 puts the two-sided normal tail at 6e-7 per
check, so a correct implementation would fail a fresh seed about once in a
million runs; the seeds are fixed, so the tests are deterministic anyway.
Every statistical test is paired with a deliberately wrong implementation
that must fail the same check: a test that cannot fail proves nothing.
"""
import math
from fractions import Fraction

import numpy as np
import pytest

from solutions import dimensionality as M

# Any overflow / invalid-value warning is a numerical-stability bug.
pytestmark = pytest.mark.filterwarnings("error")

K_SE = 5.0  # tolerance in standard errors (two-sided normal tail 6e-7)


# ----------------------------------------------------------------------------
# Samplers written here, independently of the module


def wrong_radius_sampler(n, D, rng):
    """Uniform direction, but radius U instead of U^(1/D): too many points near 0."""
    g = rng.standard_normal((n, D))
    return rng.random(n)[:, None] * g / np.linalg.norm(g, axis=1, keepdims=True)


def cube_direction_sampler(n, D, rng):
    """Correct radius law, but the direction of a uniform point of the cube."""
    c = rng.uniform(-1.0, 1.0, size=(n, D))
    r = rng.random(n) ** (1.0 / D)
    return r[:, None] * c / np.linalg.norm(c, axis=1, keepdims=True)


def rejection_sampler(n, D, rng):
    """A correct sampler by a different route: keep cube points inside the ball."""
    out = np.empty((0, D))
    while out.shape[0] < n:
        c = rng.uniform(-1.0, 1.0, size=(4 * n, D))
        out = np.concatenate([out, c[(c * c).sum(axis=1) <= 1.0]])
    return out[:n]


def radius_ecdf_ok(x, probabilities=(0.05, 0.25, 0.5, 0.75, 0.95)):
    """Empirical P(|x| <= s) within K_SE binomial standard errors of s^D.

    The radii s = p^(1/D) are the p-quantiles of the correct law, so every
    check has n p (1 - p) >= 950 expected-count variance at n = 20000 and the
    normal approximation behind K_SE holds (a fixed s such as 0.3 would have
    0.3^10 n ~ 0.1 expected points at D = 10, far from normal).
    """
    n, D = x.shape
    r = np.sqrt((x * x).sum(axis=1))
    for p in probabilities:
        s = p ** (1.0 / D)
        se = math.sqrt(p * (1.0 - p) / n)
        if abs(np.mean(r <= s) - p) > K_SE * se:
            return False
    return True


def moments_ok(x):
    """mean ~ 0 and covariance ~ I E[r^2] / D = I / (D + 2), entrywise, in SEs."""
    n, D = x.shape
    mean_ok = np.all(np.abs(x.mean(axis=0)) <= K_SE * x.std(axis=0) / math.sqrt(n))
    prods = x[:, :, None] * x[:, None, :]  # (n, D, D): E[x x^T] is the covariance (mean 0)
    target = np.eye(D) / (D + 2)
    se = prods.std(axis=0) / math.sqrt(n)
    cov_ok = np.all(np.abs(prods.mean(axis=0) - target) <= K_SE * se)
    return bool(mean_ok and cov_ok)


# ----------------------------------------------------------------------------
# Grids


def test_grid_cell_count_is_exact_int():
    assert M.grid_cell_count(10, 100) == 10 ** 100
    assert type(M.grid_cell_count(10, 100)) is int
    assert M.grid_cell_count(3, 4) == 81
    assert M.grid_cell_count(7, 0) == 1
    assert M.grid_cell_count(np.int64(2), np.int32(70)) == 2 ** 70  # no int64 wrap-around
    with pytest.raises(TypeError):
        M.grid_cell_count(2.5, 3)


def loop_empty_fraction(x, bins):
    """Slow oracle: occupied cells as a set of tuples, exact rational result."""
    occupied = set()
    for row in x.tolist():
        occupied.add(tuple(min(int(v * bins), bins - 1) for v in row))
    total = bins ** len(x[0])
    return float(Fraction(total - len(occupied), total))


def test_empty_cell_fraction_hand_cases():
    centres = (np.arange(3) + 0.5) / 3
    full = np.array([[a, b] for a in centres for b in centres])  # one point per cell
    assert M.empty_cell_fraction(full, 3) == 0.0
    assert M.empty_cell_fraction(full[:1], 3) == 8 / 9
    # two points in one cell occupy it once; x = 1.0 belongs to the last cell
    assert M.empty_cell_fraction(np.array([[0.1, 0.1], [0.2, 0.3]]), 3) == 8 / 9
    assert M.empty_cell_fraction(np.array([[1.0, 1.0], [0.9, 0.9]]), 3) == 8 / 9
    assert M.empty_cell_fraction(np.array([[0.5, 0.5], [0.1, 0.9]]), 3) == 7 / 9
    assert M.empty_cell_fraction(np.empty((0, 4)), 2) == 1.0
    with pytest.raises(ValueError):
        M.empty_cell_fraction(np.array([[-0.1, 0.5]]), 3)


@pytest.mark.parametrize("n, D, bins", [(200, 5, 3), (3000, 20, 2), (500, 3, 10), (50, 50, 2)])
def test_empty_cell_fraction_matches_loop_oracle(n, D, bins):
    x = np.random.default_rng(D).random((n, D))
    got = M.empty_cell_fraction(x, bins)
    assert type(got) is float
    assert got == loop_empty_fraction(x, bins)


def test_empty_cell_fraction_high_dimension_no_overflow():
    # 10^100 and 10^400 cells: a float bins**D overflows; the exact count does not.
    x = np.random.default_rng(1).random((1000, 400))
    assert M.empty_cell_fraction(x[:, :100], 10) == 1.0
    assert M.empty_cell_fraction(x, 10) == 1.0
    # D = 40, bins = 2: 1000 points in 2^40 cells leave 1 - ~1000/2^40 empty,
    # a value a float can still tell from 1.
    assert M.empty_cell_fraction(x[:, :40], 2) == loop_empty_fraction(x[:, :40], 2) < 1.0


# ----------------------------------------------------------------------------
# Balls and cubes


def test_unit_ball_volume_known_values():
    pi = math.pi
    for D, expected in [(0, 1.0), (1, 2.0), (2, pi), (3, 4 * pi / 3), (4, pi ** 2 / 2),
                        (5, 8 * pi ** 2 / 15), (6, pi ** 3 / 6)]:
        assert M.unit_ball_volume(D) == pytest.approx(expected, rel=1e-14, abs=0.0)
    assert M.unit_ball_volume(2, r=3.0) == pytest.approx(9 * pi, rel=1e-14, abs=0.0)
    assert M.unit_ball_volume(3, r=0.0) == 0.0
    assert type(M.unit_ball_volume(3)) is float


def test_unit_ball_volume_recursion_and_scaling():
    # up to D = 435 (the last D where V_D is a normal float), across the switch to log
    # space at D = 300; exp(log V) with |log V| ~ 700 carries ~1e-13 relative rounding,
    # hence 1e-12.
    for D in range(2, 436):
        assert M.unit_ball_volume(D) == pytest.approx(2 * math.pi / D * M.unit_ball_volume(D - 2),
                                                      rel=1e-12, abs=0.0)
    for D in (1, 7, 40):
        assert M.unit_ball_volume(D, 1.7) == pytest.approx(M.unit_ball_volume(D) * 1.7 ** D,
                                                           rel=1e-12, abs=0.0)
    volumes = [M.unit_ball_volume(D) for D in range(1, 30)]
    assert int(np.argmax(volumes)) + 1 == 5  # the unit-ball volume peaks at D = 5


def test_unit_ball_volume_large_dimension():
    # log V_D by the recursion in log space, from V_0 = 1 (even D): independent of lgamma.
    log_v = {0: 0.0}
    for D in range(2, 1001, 2):
        log_v[D] = math.log(2 * math.pi / D) + log_v[D - 2]
    assert M.log_unit_ball_volume(1000) == pytest.approx(log_v[1000], rel=1e-12, abs=0.0)
    assert M.log_unit_ball_volume(1000, r=2.0) == pytest.approx(log_v[1000] + 1000 * math.log(2),
                                                                rel=1e-12)
    # D = 400: far beyond where pi^(D/2) and Gamma(D/2 + 1) overflow, still a normal float
    assert M.unit_ball_volume(400) == pytest.approx(math.exp(log_v[400]), rel=1e-10, abs=0.0)
    assert 0.0 < M.unit_ball_volume(400) < 1e-200
    # V_1000 = 3.08e-886 is below the smallest positive float: the nearest float is 0.
    v = M.unit_ball_volume(1000)
    assert v == 0.0 and not math.isnan(v)
    assert M.unit_ball_volume(3, r=1e200) == math.inf


@pytest.mark.parametrize("D, log_target", [(436, 0.0), (1000, -700.0), (1000, 700.0),
                                           (1240, 1.0), (5000, -300.0), (20000, 650.0)])
def test_unit_ball_volume_accurate_wherever_the_result_is_normal(D, log_target):
    # Large D with the radius that puts log V_D(r) at log_target: V_D(r) is a normal float
    # there, though Gamma(D/2 + 1) (and from D = 1241 pi^(D/2)) is beyond the float range.
    # Oracle: the even-D recursion in log space, sum of log(2 pi / d), plus D log r. Both
    # sides carry rounding of about |log terms| * 1e-16 ~ 1e-11 at D = 20000.
    log_v1 = sum(math.log(2 * math.pi / d) for d in range(2, D + 1, 2))
    r = math.exp((log_target - log_v1) / D)
    want = math.exp(log_v1 + D * math.log(r))
    assert M.unit_ball_volume(D, r) == pytest.approx(want, rel=1e-9, abs=0.0)


def test_overflow_and_underflow_limits_stated_in_the_docstrings():
    # The docstrings name where Gamma(D/2 + 1) and pi^(D/2) leave the float range, where
    # V_D stops being a normal float and V_1000: each number is recomputed here.
    def words(fn):  # the docstring with its line breaks and indents as single spaces
        return " ".join(fn.__doc__.split())

    doc = words(M.unit_ball_volume)
    tiny = np.finfo(np.float64).tiny  # smallest normal float, 2.2e-308

    def overflows(f):
        try:
            f()
        except OverflowError:
            return True
        return False

    gamma_from = next(D for D in range(1, 2000) if overflows(lambda: math.gamma(D / 2 + 1)))
    pi_from = next(D for D in range(1, 3000) if overflows(lambda: math.pi ** (D / 2)))
    assert (gamma_from, pi_from) == (342, 1241)
    assert f"Gamma(D/2 + 1) alone exceeds the float range from D = {gamma_from} on" in doc
    assert f"pi^(D/2) from D = {pi_from} on" in doc
    last_normal = max(D for D in range(0, 500) if M.unit_ball_volume(D) >= tiny)
    assert last_normal == 435 and f"for r = 1 that is D = 0 to {last_normal}" in doc
    last_ratio = max(D for D in range(1, 500) if M.ball_to_cube_ratio(D) >= tiny)
    assert last_ratio == 325 and f"(D = 1 to {last_ratio})" in words(M.ball_to_cube_ratio)
    # V_1000 = 10^(log V_1000 / ln 10), written as mantissa e exponent
    log10_v = sum(math.log(2 * math.pi / d) for d in range(2, 1001, 2)) / math.log(10)
    exponent = math.floor(log10_v)
    stated = f"V_1000 = {10 ** (log10_v - exponent):.2f}e{exponent}"
    assert stated == "V_1000 = 3.08e-886"
    assert stated in doc and stated in words(M.log_unit_ball_volume)


def test_ball_to_cube_ratio():
    assert M.ball_to_cube_ratio(1) == pytest.approx(1.0, rel=1e-15, abs=0.0)
    assert M.ball_to_cube_ratio(2) == pytest.approx(math.pi / 4, rel=1e-14, abs=0.0)
    assert M.ball_to_cube_ratio(3) == pytest.approx(math.pi / 6, rel=1e-14, abs=0.0)
    ratios = [M.ball_to_cube_ratio(D) for D in range(1, 40)]
    assert all(a > b for a, b in zip(ratios, ratios[1:]))


def test_ball_to_cube_ratio_monte_carlo():
    # Share of uniform cube points within 1/2 of the centre; binomial SE.
    n, D = 200_000, 5
    x = np.random.default_rng(3).random((n, D))
    hit = np.mean(((x - 0.5) ** 2).sum(axis=1) <= 0.25)
    p = M.ball_to_cube_ratio(D)
    assert abs(hit - p) <= K_SE * math.sqrt(p * (1 - p) / n)


def test_corner_ball_diameter_geometry():
    for D in (1, 2, 3, 4, 9, 16, 100):
        # inscribed ball centre (1/2, ..., 1/2) seen from the common corner 0
        centre_distance = np.linalg.norm(np.full(D, 0.5))
        assert M.corner_ball_diameter(D) == pytest.approx(2 * (centre_distance - 0.5), abs=1e-12)
    assert M.corner_ball_diameter(4) == 1.0  # as big as the inscribed balls
    assert M.corner_ball_diameter(9) == 2.0  # as wide as the stack of cubes
    assert M.corner_ball_diameter(10) > 2.0  # sticks out of it


def test_shell_fraction_closed_form():
    assert M.shell_fraction(2, 0.01) == pytest.approx(0.0199, rel=1e-12, abs=0.0)
    assert M.shell_fraction(3, 0.01) == pytest.approx(0.029701, rel=1e-12, abs=0.0)
    for D in (1, 10, 229, 230, 400, 1000):
        assert M.shell_fraction(D, 0.01) == pytest.approx(1 - 0.99 ** D, rel=1e-12, abs=0.0)
    # 90% in the outer 1% from D = 230, and about 98% at D = 400
    assert M.shell_fraction(229, 0.01) < 0.9 <= M.shell_fraction(230, 0.01)
    assert M.shell_fraction(400, 0.01) == pytest.approx(0.98, abs=0.003)
    assert M.shell_fraction(5, 0.0) == 0.0
    assert M.shell_fraction(5, 1.0) == 1.0
    assert M.shell_fraction(0, 0.5) == 0.0
    assert type(M.shell_fraction(3, 0.1)) is float


def test_shell_fraction_tiny_eps_is_accurate():
    # series 1 - (1 - eps)^D = D eps - C(D, 2) eps^2 + ..., exact to 1e-24 here
    D, eps = 10, 1e-12
    series = D * eps - D * (D - 1) / 2 * eps ** 2
    assert M.shell_fraction(D, eps) == pytest.approx(series, rel=1e-14, abs=0.0)
    assert abs((1 - (1 - eps) ** D) / series - 1) > 1e-6  # the naive form is off


def test_volume_fraction_within_and_shell_add_up():
    for D in (1, 3, 50):
        for s in (0.0, 0.3, 0.99, 1.0):
            assert M.volume_fraction_within(D, s) + M.shell_fraction(D, 1 - s) == pytest.approx(1.0)
    assert M.volume_fraction_within(3, 0.5) == 0.125


def test_dimension_for_shell_fraction():
    assert M.dimension_for_shell_fraction(0.9, 0.01) == 230
    for fraction, eps in [(0.9, 0.01), (0.98, 0.01), (0.5, 0.1), (0.99, 0.001), (0.0, 0.3)]:
        D = 0
        while 1 - (1 - eps) ** D < fraction:  # brute force from the closed form
            D += 1
        assert M.dimension_for_shell_fraction(fraction, eps) == D


# ----------------------------------------------------------------------------
# Angles


def test_random_angles_shape_range_and_determinism():
    a = M.random_angles(4, 1000, np.random.default_rng(0))
    assert a.shape == (1000,) and a.dtype == np.float64
    assert np.all((a >= 0.0) & (a <= 180.0))
    np.testing.assert_array_equal(a, M.random_angles(4, 1000, np.random.default_rng(0)))
    # D = 1: every pair is parallel or antiparallel
    a1 = M.random_angles(1, 1000, np.random.default_rng(1))
    assert np.all(np.isclose(a1, 0.0) | np.isclose(a1, 180.0))


class RepeatRng:
    """Stand-in Generator whose uniform() always returns the same array."""

    def __init__(self, values):
        self.values = values

    def uniform(self, low, high, size):
        assert np.shape(self.values) == tuple(size)
        return self.values.copy()


def test_random_angles_clip_the_cosine():
    # u = v: in floats <u, u> / (|u| |u|) lands on 1 + 2^-52 for many u (how
    # often depends on the summation order), where arccos is nan.
    u = np.random.default_rng(2).uniform(-1.0, 1.0, size=(500, 3))
    norm = np.linalg.norm(u, axis=1)
    assert np.any((u * u).sum(axis=1) / (norm * norm) > 1.0)
    theta = M.random_angles(3, 500, RepeatRng(u))
    assert np.all(theta < 1e-5)  # rounding of a cosine of 1 - 2^-53 gives ~1e-6 degrees


@pytest.mark.parametrize("D", [2, 3, 50])
def test_random_angles_moments(D):
    n = 40_000
    theta = M.random_angles(D, n, np.random.default_rng(D))
    # mean 90 by the symmetry v -> -v
    assert abs(theta.mean() - 90.0) <= K_SE * theta.std() / math.sqrt(n)
    # E[cos^2] = sum_j E[u_j^2/|u|^2] E[v_j^2/|v|^2] = D (1/D)^2 = 1/D exactly
    # (exchangeable, sign-symmetric entries: the cross terms vanish).
    c2 = np.cos(np.radians(theta)) ** 2
    assert abs(c2.mean() - 1.0 / D) <= K_SE * c2.std() / math.sqrt(n)


def test_random_angles_concentrate_at_right_angles():
    # Var cos = 1/D and theta ~ pi/2 - cos for large D, so std(theta) sqrt(D) -> 1 (radians).
    # SE of a sample std is about std / sqrt(2n) = 0.7% for n = 10000; the
    # next term of the expansion is O(1/D).  Tolerance 0.035 = 5 SE.
    D, n = 1000, 10_000
    theta = np.radians(M.random_angles(D, n, np.random.default_rng(7)))
    assert abs(theta.std() * math.sqrt(D) - 1.0) < 0.035
    spreads = [M.random_angles(d, 5000, np.random.default_rng(d)).std() for d in (2, 3, 50, 100)]
    assert all(a > b for a, b in zip(spreads, spreads[1:]))


# ----------------------------------------------------------------------------
# Uniform points in a ball


@pytest.mark.parametrize("D", [1, 2, 3, 10])
def test_sample_unit_ball_radius_law(D):
    x = M.sample_unit_ball(20_000, D, np.random.default_rng(10 + D))
    assert x.shape == (20_000, D) and x.dtype == np.float64
    assert np.all(np.linalg.norm(x, axis=1) <= 1.0 + 1e-12)  # rounding slack only
    assert radius_ecdf_ok(x)


@pytest.mark.parametrize("D", [2, 3, 10])
def test_wrong_radius_law_fails_the_radius_test(D):
    assert not radius_ecdf_ok(wrong_radius_sampler(20_000, D, np.random.default_rng(D)))


@pytest.mark.parametrize("D", [2, 3, 6])
def test_sample_unit_ball_moments(D):
    # E[x] = 0 and E[x x^T] = E[r^2] I / D with E[r^2] = int_0^1 s^2 D s^(D-1) ds = D / (D + 2)
    x = M.sample_unit_ball(40_000, D, np.random.default_rng(20 + D))
    assert moments_ok(x)
    assert moments_ok(rejection_sampler(40_000, D, np.random.default_rng(30 + D)))
    # mean and covariance are blind to the direction mistake: normalised cube
    # points are exchangeable and sign-symmetric, so E[v v^T] = I / D exactly.
    # That is why isotropy_statistic uses a fourth moment.
    assert moments_ok(cube_direction_sampler(40_000, D, np.random.default_rng(40 + D)))
    # ...but they do see a missing centring (directions of [0, 1)^D points)
    u = np.random.default_rng(50 + D).random((40_000, D))
    assert not moments_ok(u / np.linalg.norm(u, axis=1, keepdims=True) * np.sqrt(D / (D + 2)))


def test_sample_unit_ball_determinism_and_empty():
    a = M.sample_unit_ball(5, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(a, M.sample_unit_ball(5, 3, np.random.default_rng(0)))
    assert M.sample_unit_ball(0, 3, np.random.default_rng(0)).shape == (0, 3)


# ----------------------------------------------------------------------------
# The sampler checks meant for the grader


def slow_ks(u):
    """sup over a fine grid (plus the data points and their left limits) of |F_n - F|."""
    grid = np.concatenate([np.linspace(0.0, 1.0, 20001), u, np.nextafter(u, -np.inf)])
    grid = grid[(grid >= 0.0) & (grid <= 1.0)]
    return max(abs(np.sum(u <= s) / u.size - s) for s in grid)


def test_radius_cdf_statistic_hand_cases():
    # D = 1, radii 0.1, 0.5, 0.9: KS = max(1/3 - 0.1, 0.9 - 2/3) = 7/30
    x = np.array([[0.1], [-0.5], [0.9]])
    assert M.radius_cdf_statistic(x) == pytest.approx(math.sqrt(3) * 7 / 30, rel=1e-14, abs=0.0)
    # every point outside the ball: the ECDF stays 0 up to s = 1 where s^D = 1
    assert M.radius_cdf_statistic(np.full((4, 2), 2.0)) == pytest.approx(2.0)
    x = np.random.default_rng(0).normal(size=(300, 3)) * 0.4
    u = np.minimum(np.linalg.norm(x, axis=1) ** 3, 1.0)
    expected = math.sqrt(300) * slow_ks(u)
    assert M.radius_cdf_statistic(x) == pytest.approx(expected, rel=1e-12, abs=0.0)


def test_isotropy_statistic_hand_cases():
    # D = 2 directions (cos t, sin t): q = 1 - sin^2(2t) / 2, Var q = Var(sin^2 2t) / 4 = 1/32
    n = 1000
    t = 2 * np.pi * np.arange(n) / n  # equispaced: mean sin^2(2t) = 1/2 exactly
    circle = np.stack([np.cos(t), np.sin(t)], axis=1) * 0.3
    assert abs(M.isotropy_statistic(circle)) < 1e-9
    axes = np.tile([[0.0, 0.7], [-0.2, 0.0]], (n // 2, 1))  # q = 1 for every point
    expected = (1 - 0.75) / math.sqrt(1 / 32 / n)
    assert M.isotropy_statistic(axes) == pytest.approx(expected, rel=1e-12, abs=0.0)
    assert M.isotropy_statistic(np.ones((10, 1))) == 0.0


def test_isotropy_null_moments_by_monte_carlo():
    # mean and variance of q = sum v_j^4 under uniform directions, D = 5, from
    # normalised Gaussians: E q = 3/7, Var q = 24*4 / (49*9*11) = 0.019789...
    n, D = 200_000, 5
    g = np.random.default_rng(5).standard_normal((n, D))
    q = ((g / np.linalg.norm(g, axis=1, keepdims=True)) ** 4).sum(axis=1)
    assert abs(q.mean() - 3 / 7) <= K_SE * q.std() / math.sqrt(n)
    assert q.var() == pytest.approx(96 / (49 * 9 * 11), rel=0.02, abs=0.0)  # its SE is ~0.5%
    assert abs(M.isotropy_statistic(g)) < K_SE


@pytest.mark.parametrize("D", [2, 3, 5, 10])
def test_correct_samplers_pass_the_grader_check(D):
    for seed in range(4):
        rng = np.random.default_rng(100 * D + seed)
        assert M.looks_uniform_in_ball(M.sample_unit_ball(20_000, D, rng))
    assert M.looks_uniform_in_ball(rejection_sampler(20_000, D, np.random.default_rng(D)))


@pytest.mark.parametrize("D", [2, 3, 10])
def test_wrong_samplers_fail_the_grader_check(D):
    rng = np.random.default_rng(D)
    x = wrong_radius_sampler(20_000, D, rng)
    assert M.radius_cdf_statistic(x) > 3.0 and not M.looks_uniform_in_ball(x)
    x = cube_direction_sampler(20_000, D, rng)
    # right radius law, wrong directions: only the isotropy statistic sees it
    assert M.radius_cdf_statistic(x) <= 3.0
    assert M.isotropy_statistic(x) < -6.0 and not M.looks_uniform_in_ball(x)
    g = rng.standard_normal((20_000, D))
    assert not M.looks_uniform_in_ball(g)  # not normalised: leaves the ball
    assert not M.looks_uniform_in_ball(g / np.linalg.norm(g, axis=1, keepdims=True))  # sphere only


def test_false_failure_bounds():
    assert M.radius_false_failure_bound(3.0) == pytest.approx(2 * math.exp(-18), rel=1e-12, abs=0.0)
    # Bernstein with sigma^2 = Var q, b = 1 - 3/5 at D = 3, worked by hand
    sigma = math.sqrt(48 / 1575)
    by_hand = 2 * math.exp(-36 / (2 * (1 + 0.4 * 6 / (3 * sigma * math.sqrt(20_000)))))
    got = M.isotropy_false_failure_bound(20_000, 3, 6.0)
    assert got == pytest.approx(by_hand, rel=1e-12, abs=0.0)
    assert by_hand < 1e-7
    bounds = [M.isotropy_false_failure_bound(20_000, 3, z) for z in (3, 4, 5, 6)]
    assert all(a > b for a, b in zip(bounds, bounds[1:]))


# ----------------------------------------------------------------------------
# Distances and k-NN


def test_distance_contrast_hand_cases():
    query = np.array([1.0, -2.0, 0.5])
    points = query + np.array([[1.0, 0, 0], [0, -2.0, 0], [0, 0, 3.0]])  # distances 1, 2, 3
    got = M.distance_contrast(points, query)
    assert type(got) is float and got == pytest.approx(2.0, rel=1e-15, abs=0.0)
    assert M.distance_contrast(np.vstack([points, query]), query) == math.inf


def test_distance_contrast_shrinks_with_dimension():
    # uniform cube points: at D = 2 the nearest of 1000 points is ~50x closer than
    # the farthest; at D = 1000 all distances are sqrt(D/6) (1 +- a few %).
    rng = np.random.default_rng(11)
    contrast = {D: M.distance_contrast(rng.random((1000, D)), rng.random(D)) for D in (2, 1000)}
    assert contrast[2] > 5.0
    assert contrast[1000] < 0.3
    assert contrast[2] > 10 * contrast[1000]


def test_pairwise_sq_distances_and_knn_predict_match_loops():
    rng = np.random.default_rng(12)
    x_train, x_test = rng.random((40, 6)), rng.random((15, 6))
    y_train = rng.integers(0, 3, size=40)
    d2 = M.pairwise_sq_distances(x_test, x_train)
    np.testing.assert_allclose(d2, ((x_test[:, None, :] - x_train[None, :, :]) ** 2).sum(-1),
                               rtol=1e-12, atol=1e-14)
    for k in (1, 3, 4, 7):
        expected = []
        for a in x_test.tolist():
            dist = [sum((p - q) ** 2 for p, q in zip(a, row)) for row in x_train.tolist()]
            order = sorted(range(40), key=dist.__getitem__)
            labels = [int(y_train[j]) for j in order[:k]]
            counts = {c: labels.count(c) for c in set(labels)}
            best = max(counts.values())
            expected.append(min(c for c in counts if counts[c] == best))  # tie: smallest label
        np.testing.assert_array_equal(M.knn_predict(x_train, y_train, x_test, k), expected)


def test_knn_accuracy_drops_with_noise_dimensions():
    # One informative axis: class means 0.25 / 0.75, sigma 0.2, Bayes accuracy
    # Phi(1.25) = 0.89; 5-NN gets ~0.87 with no noise, ~0.54 with 1000 noise axes.
    # With n_test = 500 the SE of an accuracy is <= 0.023: both margins are > 3 SE.
    clean = M.knn_accuracy(500, 500, 1, 0, 5, np.random.default_rng(0))
    noisy = M.knn_accuracy(500, 500, 1, 1000, 5, np.random.default_rng(0))
    assert type(clean) is float
    assert clean > 0.8
    assert noisy < 0.65


# ----------------------------------------------------------------------------
# Inputs are never mutated


def test_no_input_mutation():
    rng = np.random.default_rng(13)
    x = rng.random((50, 4))
    q = rng.random(4)
    y = rng.integers(0, 2, size=50)
    saved = (x.copy(), q.copy(), y.copy())
    M.empty_cell_fraction(x, 3)
    M.distance_contrast(x, q)
    M.radius_cdf_statistic(x)
    M.isotropy_statistic(x)
    M.looks_uniform_in_ball(x)
    M.pairwise_sq_distances(x, x)
    M.knn_predict(x, y, x[:5], 3)
    for a, b in zip(saved, (x, q, y)):
        np.testing.assert_array_equal(a, b)
