"""Chapter 4: the curse of dimensionality.

Every claim of the chapter is a small computation here:

* grids: a grid with ``bins`` cells per axis has bins^D cells, so a data set
  of fixed size leaves almost all of them empty (``grid_cell_count``,
  ``empty_cell_fraction``); local methods such as k-NN run out of
  neighbours (``knn_accuracy``);
* spiky cubes: the inscribed ball's share of the cube,
  V_D(1/2) = pi^(D/2) / Gamma(D/2 + 1) 2^-D, goes to 0 while the half
  diagonal sqrt(D)/2 grows (``ball_to_cube_ratio``, ``corner_ball_diameter``);
* near-orthogonality: the cosine of two random vectors has mean 0 and
  variance 1/D, so angles pile up at 90 degrees (``random_angles``);
* thin shells: the outer eps*r of a D-ball holds 1 - (1 - eps)^D of its
  volume (``shell_fraction``, ``volume_fraction_within``);
* distance concentration: (d_max - d_min) / d_min shrinks like 1/sqrt(D)
  (``distance_contrast``).

Helpers beyond the graded functions: ``log_unit_ball_volume`` (V_D is
below the normal floats from D = 436 on and rounds to 0.0 from D = 453),
``volume_fraction_within``,
``dimension_for_shell_fraction``, ``pairwise_sq_distances``,
``knn_predict``, ``knn_accuracy`` and the sampler checks below.

Scalars (D, bins, eps, r) are plain Python numbers; scalar results are
Python ``float`` (``int`` for exact counts).  ``rng`` is a
``numpy.random.Generator``.  No function mutates its inputs.

Slips worth avoiding (they circulate in popular write-ups)
-----------------------------------------------------------
* The volume of a D-ball scales like r^D, so the shell share is
  (r^D - ((1 - eps) r)^D) / r^D = 1 - (1 - eps)^D.  Writing the exponent 2
  (the disc's) or r^2 inside the 3-ball's (4/3) pi r^3 gives wrong shares;
  the 3-D value for eps = 0.01 is 1 - 0.99^3 = 0.029701.
* With eps = 0.01, 90% of the volume is in the outer shell from D = 230 on
  (0.99^229 > 0.1 > 0.99^230), not "beyond D = 400"; at D = 400 the shell
  already holds 1 - 0.99^400 = 98.2% (``dimension_for_shell_fraction``).

Testing a ball sampler (for the book and the autograder)
--------------------------------------------------------
x is uniform in the unit D-ball iff its radius r = |x| has
P(r <= s) = s^D and its direction x / |x| is uniform on the sphere,
independently.  Two statistics check the two halves separately, so a
failure says which half is wrong.

``radius_cdf_statistic(x)`` = sqrt(n) sup_s |F_n(s) - s^D| (Kolmogorov-
Smirnov on u = r^D, which is Uniform(0, 1) for a correct sampler).  By the
Dvoretzky-Kiefer-Wolfowitz inequality with Massart's constant, a correct
sampler exceeds lam with probability at most 2 exp(-2 lam^2) for *every*
n and D, whatever the seed: lam = 3 gives <= 3.1e-8.  The common slip
r = U instead of U^(1/D) has sup_s |s^D - s| >= 0.25 for D >= 2, so with
n = 20000 the statistic is near 35 (it fails with certainty in practice).

``isotropy_statistic(x)`` is a z-score of the fourth moment of the
direction v = x / |x|: q = sum_j v_j^4 has, for a uniform direction,
E q = 3 / (D + 2) and Var q = 24 (D - 1) / ((D + 2)^2 (D + 4) (D + 6))
(from the moments E v_j^8 = 105 / (D (D+2) (D+4) (D+6)) and
E v_j^4 v_k^4 = 9 / (D (D+2) (D+4) (D+6)) of the uniform sphere).  The
second moments cannot be used: any exchangeable, sign-symmetric direction
(e.g. a point of the cube [-1, 1]^D scaled to length 1) has E v v^T = I / D
exactly, but the cube leans towards its corners where q is small: at D = 3
its E q is 0.54 against 0.6, a shift of 0.34 standard deviations per point,
so with n = 20000 the z-score is near -48.  Under a correct sampler z is
close to N(0, 1) (P(|z| > 6) ~ 2e-9); a bound that needs no normal
approximation is Bernstein's inequality (``isotropy_false_failure_bound``):
with n = 20000 and threshold 6 it is <= 6e-8 at D = 3 and <= 3e-7 at
D = 10, but 2e-6 at D = 20 and 4e-4 at D = 50 (q's range [1/D, 1] grows
huge against its spread), so test directions at small D.  At D = 1 the
only directions are +-1 and q = 1 always: nothing to test.

``looks_uniform_in_ball`` combines both with the norm check |x| <= 1;
with the defaults (lam = 3, z = 6, n >= 20000, 2 <= D <= 10) a correct
sampler fails for fewer than 1 seed in 3 million.
"""
import math
import operator
from fractions import Fraction

import numpy as np

_LOG_FLOAT_MAX = math.log(np.finfo(np.float64).max)


def _as_int(value, name, minimum=0):
    """Return value as a Python int (accepts ints, NumPy ints, whole floats)."""
    try:
        out = operator.index(value)
    except TypeError:
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            out = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if out < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {out}")
    return out


def _points(x, name="x"):
    """x as a float64 (n, D) array (a copy is never needed: we never write)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, D), got {x.shape}")
    return x


# ----------------------------------------------------------------------------
# Grids: the number of cells outruns any data set


def grid_cell_count(bins, D):
    """Number of cells of a grid with ``bins`` cells per axis in D dimensions.

    bins, D: non-negative integers -> exact Python int bins^D.
    """
    return _as_int(bins, "bins", 1) ** _as_int(D, "D")


def empty_cell_fraction(x, bins):
    """Share of the bins^D grid cells of [0, 1)^D that hold none of the points.

    x: (n, D) with entries in [0, 1]; bins: integer -> Python float

        1 - (number of distinct occupied cells) / bins^D.

    Point x lies in the cell with integer index floor(x * bins) on every
    axis (clipped to bins - 1 so that x = 1 lands in the last cell).  Only the
    n occupied cells are ever listed, and the ratio is formed with exact
    rationals, so D = 100 (10^100 cells) works; the float is taken last.
    """
    bins = _as_int(bins, "bins", 1)
    if bins > 2 ** 53:  # beyond this, float coordinates cannot resolve the cells
        raise ValueError("bins must be <= 2**53")
    x = _points(x)
    if np.any(x < 0.0) or np.any(x > 1.0):
        raise ValueError("points must lie in [0, 1]^D")
    n, D = x.shape
    total = grid_cell_count(bins, D)
    if n == 0:
        return 1.0
    cells = np.minimum(np.floor(x * bins), bins - 1).astype(np.int64)
    occupied = np.unique(cells, axis=0).shape[0]
    return float(1 - Fraction(occupied, total))


# ----------------------------------------------------------------------------
# Balls and cubes: spiky cubes and thin shells


def log_unit_ball_volume(D, r=1.0):
    """Natural logarithm of the volume of the D-ball of radius r.

    D: integer >= 0; r: float >= 0 -> Python float (-inf when r = 0 < D)

        log V_D(r) = (D/2) log pi - lgamma(D/2 + 1) + D log r.

    Never overflows: use it where V_D itself leaves the float range
    (log V_1000 = -2038.97, i.e. V_1000 = 3.08e-886).
    """
    D = _as_int(D, "D")
    r = float(r)
    if r < 0.0:
        raise ValueError(f"r must be >= 0, got {r}")
    if D == 0:
        return 0.0
    if r == 0.0:
        return -math.inf
    return 0.5 * D * math.log(math.pi) - math.lgamma(0.5 * D + 1.0) + D * math.log(r)


def unit_ball_volume(D, r=1.0):
    """Volume of the D-ball of radius r.

    D: integer >= 0; r: float >= 0 -> Python float

        V_D(r) = pi^(D/2) / Gamma(D/2 + 1) * r^D.

    Accurate in relative terms wherever V_D(r) is a normal float (from
    2.2e-308 to 1.8e+308), for every D: for r = 1 that is D = 0 to 435,
    and larger D with larger r.  Mind that Gamma(D/2 + 1) alone exceeds the
    float range from D = 342 on (math.gamma raises OverflowError) and
    pi^(D/2) from D = 1241 on, long before V_D does.  The unit-ball volume
    peaks at D = 5 and then falls so fast that it underflows to 0.0 from
    D = 453 on (V_1000 = 3.08e-886 < 5e-324, the smallest positive float):
    that 0.0 is the float nearest the true value, not an error.  Beyond the
    largest float the result is inf.
    """
    log_v = log_unit_ball_volume(D, r)
    D, r = _as_int(D, "D"), float(r)
    # Small D: the direct product, accurate to a few ulp (V_2 = pi exactly).
    # Beyond, Gamma(D/2 + 1) overflows long before V_D does: exp of the log.
    if D <= 300 and r > 0.0:
        try:
            v = math.pi ** (0.5 * D) / math.gamma(0.5 * D + 1.0) * r ** D
        except OverflowError:  # r^D beyond float range
            v = math.inf
        if math.isfinite(v) and v > 0.0:
            return v
    if log_v > _LOG_FLOAT_MAX:  # math.exp would raise: beyond float range
        return math.inf
    return math.exp(log_v)


def ball_to_cube_ratio(D):
    """Volume of the ball inscribed in a cube over the cube's volume.

    D: integer >= 1 -> Python float  V_D(1/2) / 1^D = pi^(D/2) / (Gamma(D/2 + 1) 2^D).

    Scale-free, so take the unit cube and the ball of radius 1/2.  Accurate
    in relative terms wherever the result is a normal float (D = 1 to 325).
    """
    return unit_ball_volume(_as_int(D, "D", 1), 0.5)


def corner_ball_diameter(D):
    """Diameter of the ball at the common corner of 2^D unit cubes that
    touches the 2^D balls of diameter 1 inscribed in them.

    D: integer >= 1 -> Python float  sqrt(D) - 1.

    The inscribed balls are centred at (+-1/2, ..., +-1/2), at distance
    sqrt(D)/2 from the corner; subtract their radius 1/2 and double.
    For D > 9 the diameter exceeds 2, the side of the stack of cubes.
    """
    return math.sqrt(_as_int(D, "D", 1)) - 1.0


def volume_fraction_within(D, s):
    """Share of a D-ball's volume within s*r of its centre.

    D: integer >= 0; s: float in [0, 1] -> Python float  s^D.

    This is also P(|x| <= s) for x uniform in the unit ball: the radius law
    a ball sampler must reproduce.
    """
    D = _as_int(D, "D")
    s = float(s)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"s must lie in [0, 1], got {s}")
    return s ** D


def shell_fraction(D, eps):
    """Share of a D-ball's volume within eps*r of its surface.

    D: integer >= 0; eps: float in [0, 1] -> Python float

        1 - (1 - eps)^D = -expm1(D log1p(-eps)).

    Accurate in relative terms for every D and every eps, however tiny
    (1e-12 or 1e-300): the second form keeps the digits that
    1 - (1 - eps)^D would cancel (eps = 1e-12, D = 10 loses ~4 digits).
    """
    D = _as_int(D, "D")
    eps = float(eps)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1], got {eps}")
    if D == 0:
        return 0.0
    if eps == 1.0:
        return 1.0
    return float(-math.expm1(D * math.log1p(-eps)))


def dimension_for_shell_fraction(fraction, eps):
    """Smallest D whose outer eps-shell holds at least ``fraction`` of the volume.

    fraction: float in [0, 1); eps: float in (0, 1) -> Python int

        smallest D with 1 - (1 - eps)^D >= fraction,
        i.e. D = ceil(log(1 - fraction) / log(1 - eps)).

    (fraction 0.9, eps 0.01) -> 230.  The ceiling of a rounded quotient can
    be off by one at an exact boundary, so the candidate is checked and
    moved with ``shell_fraction`` itself.
    """
    fraction, eps = float(fraction), float(eps)
    if not (0.0 <= fraction < 1.0 and 0.0 < eps < 1.0):
        raise ValueError("need 0 <= fraction < 1 and 0 < eps < 1")
    D = max(0, math.ceil(math.log1p(-fraction) / math.log1p(-eps)))
    while D > 0 and shell_fraction(D - 1, eps) >= fraction:
        D -= 1
    while shell_fraction(D, eps) < fraction:
        D += 1
    return D


# ----------------------------------------------------------------------------
# Random vectors: angles and uniform points in a ball


def random_angles(D, n_pairs, rng):
    """Angles between random pairs of vectors with entries uniform in [-1, 1].

    D, n_pairs: integers >= 1; rng: numpy Generator -> (n_pairs,) angles in
    degrees, in [0, 180].

        cos theta = <u, v> / (|u| |v|),   theta = arccos(cos theta).

    u (all n_pairs rows) is drawn first, then v.  Rounding can push the
    cosine a hair outside [-1, 1], where arccos is nan, hence the clip.
    """
    D = _as_int(D, "D", 1)
    n_pairs = _as_int(n_pairs, "n_pairs")
    u = rng.uniform(-1.0, 1.0, size=(n_pairs, D))
    v = rng.uniform(-1.0, 1.0, size=(n_pairs, D))
    cos = np.einsum("nd,nd->n", u, v) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def sample_unit_ball(n, D, rng):
    """n points uniform inside the unit D-ball.

    n, D: integers (D >= 1); rng: numpy Generator (all randomness from it)
    -> (n, D).

    Uniform in the ball means two things at once: a direction uniform on
    the sphere, and a radius r whose law matches the volume, P(r <= s) = s^D
    (the book's chapter 4 derives both; rejection from the cube is hopeless
    at large D).
    """
    # x = r g / |g| with g ~ N(0, I_D): the Gaussian is rotation invariant,
    # so g / |g| is uniform on the sphere (a normalised cube point leans
    # towards the corners).  r = U^(1/D) has P(r <= s) = s^D; r = U would
    # crowd the points at the centre.
    n = _as_int(n, "n")
    D = _as_int(D, "D", 1)
    g = rng.standard_normal((n, D))
    r = rng.random(n) ** (1.0 / D)
    norms = np.linalg.norm(g, axis=1, keepdims=True)
    return r[:, None] * g / norms


# ----------------------------------------------------------------------------
# Distance concentration and its effect on nearest neighbours


def distance_contrast(points, query):
    """Relative contrast of the distances from a query to a set of points.

    points: (n, D), query: (D,) -> Python float

        (d_max - d_min) / d_min,   d_i = |points_i - query|.

    inf when the query coincides with a point (d_min = 0) and another point
    is farther away; nan when every distance is 0.  Differences are formed
    directly (no |a|^2 + |b|^2 - 2ab), so small distances keep their digits.
    """
    points = _points(points, "points")
    query = np.asarray(query, dtype=np.float64)
    if query.shape != (points.shape[1],):
        raise ValueError(f"query must have shape ({points.shape[1]},), got {query.shape}")
    if points.shape[0] == 0:
        raise ValueError("need at least one point")
    d = np.linalg.norm(points - query, axis=1)
    d_min, d_max = float(d.min()), float(d.max())
    if d_min == 0.0:
        return math.inf if d_max > 0.0 else math.nan
    return (d_max - d_min) / d_min


def pairwise_sq_distances(a, b):
    """Squared Euclidean distances between the rows of a and of b.

    a: (m, D), b: (n, D) -> (m, n)   |a_i|^2 + |b_j|^2 - 2 <a_i, b_j>.

    One matrix product instead of an (m, n, D) difference array.  The
    expansion cancels when a_i ~ b_j, so tiny values can come out slightly
    negative; they are clipped at 0 (fine for ranking neighbours, not for
    measuring tiny distances).
    """
    a, b = _points(a, "a"), _points(b, "b")
    sq = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(sq, 0.0)


def knn_predict(x_train, y_train, x_test, k):
    """k-nearest-neighbour majority vote.

    x_train: (n_train, D), y_train: (n_train,) integer labels,
    x_test: (n_test, D), k: 1 <= k <= n_train -> (n_test,) predicted labels.

    Each test point takes the most frequent label among its k nearest
    training points; a tied vote goes to the smallest label (use odd k for
    two classes to avoid ties).  Memory: one (n_test, n_train) float array.
    """
    y_train = np.asarray(y_train)
    k = _as_int(k, "k", 1)
    if k > y_train.shape[0]:
        raise ValueError("k exceeds the number of training points")
    d2 = pairwise_sq_distances(x_test, x_train)
    nearest = np.argpartition(d2, k - 1, axis=1)[:, :k]  # order inside the k is irrelevant
    classes, codes = np.unique(y_train, return_inverse=True)
    votes = np.zeros((d2.shape[0], classes.shape[0]), dtype=np.int64)
    np.add.at(votes, (np.arange(d2.shape[0])[:, None], codes.reshape(-1)[nearest]), 1)
    return classes[np.argmax(votes, axis=1)]


def knn_accuracy(n_train, n_test, n_informative, n_noise, k, rng,
                 separation=0.5, sigma=0.2):
    """Test accuracy of k-NN on two classes hidden among noise dimensions.

    n_train, n_test, n_informative, n_noise, k: integers; rng: Generator;
    separation, sigma: floats -> Python float in [0, 1].

    Labels y are fair coin flips.  Each of the n_informative coordinates is
    N(1/2 + (y - 1/2) separation, sigma^2) (class means 1/2 -+ separation/2);
    each of the n_noise coordinates is Uniform[0, 1) whatever the label.  The
    classes stay exactly as separable as with no noise at all (a classifier
    reading only the informative axes is unaffected), yet every noise axis
    adds about 1/6 to each squared distance with fluctuations that drown the
    informative part, so k-NN drifts towards guessing (accuracy 1/2).
    Draw order: labels, informative, noise, for train and test together.
    """
    n_train, n_test = _as_int(n_train, "n_train", 1), _as_int(n_test, "n_test", 1)
    n_informative = _as_int(n_informative, "n_informative")
    n_noise = _as_int(n_noise, "n_noise")
    n = n_train + n_test
    y = rng.integers(0, 2, size=n)
    informative = (0.5 + (y[:, None] - 0.5) * separation
                   + sigma * rng.standard_normal((n, n_informative)))
    noise = rng.random((n, n_noise))
    x = np.concatenate([informative, noise], axis=1)
    if x.shape[1] == 0:
        x = np.zeros((n, 1))  # no features: every point is everyone's neighbour
    y_hat = knn_predict(x[:n_train], y[:n_train], x[n_train:], k)
    return float(np.mean(y_hat == y[n_train:]))


# ----------------------------------------------------------------------------
# Checking a ball sampler (see the module docstring for the error rates)


def radius_cdf_statistic(x):
    """Kolmogorov-Smirnov distance of the radius law, scaled by sqrt(n).

    x: (n, D), n >= 1 -> Python float

        sqrt(n) sup_s |F_n(s) - s^D|,   F_n(s) = #{i : |x_i| <= s} / n,

    computed on u_i = |x_i|^D against Uniform(0, 1) (CDF min(u, 1), so
    points outside the ball count against the sampler).  For a correct
    sampler P(statistic > lam) <= 2 exp(-2 lam^2) for every n and D.
    """
    x = _points(x)
    n, D = x.shape
    if n == 0:
        raise ValueError("need at least one point")
    u = np.sort(np.minimum(np.linalg.norm(x, axis=1) ** D, 1.0))
    i = np.arange(1, n + 1)
    # The ECDF jumps at every u_i: compare the CDF with both sides of the jump.
    ks = max(np.max(i / n - u), np.max(u - (i - 1) / n))
    return float(math.sqrt(n) * ks)


def radius_false_failure_bound(lam):
    """Bound 2 exp(-2 lam^2) on P(radius_cdf_statistic > lam) for a correct
    sampler (Dvoretzky-Kiefer-Wolfowitz-Massart; valid for lam >= 0.83)."""
    return min(1.0, 2.0 * math.exp(-2.0 * float(lam) ** 2))


def _fourth_moment_null(D):
    """Mean, variance and range of q = sum_j v_j^4 for v uniform on S^(D-1)."""
    mean = 3.0 / (D + 2)
    var = 24.0 * (D - 1) / ((D + 2) ** 2 * (D + 4) * (D + 6))
    spread = max(1.0 - mean, mean - 1.0 / D)  # q lies in [1/D, 1]
    return mean, var, spread


def isotropy_statistic(x):
    """z-score of the fourth moment of the directions x_i / |x_i|.

    x: (n, D), n >= 1, D >= 2 -> Python float

        q_i = sum_j (x_ij / |x_i|)^4,
        z = (mean_i q_i - 3/(D+2)) / sqrt(Var q / n),
        Var q = 24 (D-1) / ((D+2)^2 (D+4) (D+6)).

    About N(0, 1) for uniform directions; strongly negative for directions
    that lean to the cube's corners.  Radii do not enter.  Returns 0.0 for
    D = 1, where q = 1 always and there is nothing to test.
    """
    x = _points(x)
    n, D = x.shape
    if n == 0:
        raise ValueError("need at least one point")
    if D == 1:
        return 0.0
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    v = x / np.where(norms > 0.0, norms, 1.0)  # x = 0 has probability 0
    q = (v ** 4).sum(axis=1)
    mean, var, _ = _fourth_moment_null(D)
    return float((q.mean() - mean) / math.sqrt(var / n))


def isotropy_false_failure_bound(n, D, z):
    """Bernstein bound on P(|isotropy_statistic| >= z) for uniform directions.

    n, D (>= 2): integers; z: float -> Python float

        2 exp(-z^2 / (2 (1 + b z / (3 sigma sqrt(n))))),

    sigma^2 = Var q and b = max |q - E q| over q in [1/D, 1].  No normal
    approximation is involved.
    """
    n, D = _as_int(n, "n", 1), _as_int(D, "D", 2)
    _, var, b = _fourth_moment_null(D)
    sigma = math.sqrt(var)
    z = float(z)
    return min(1.0, 2.0 * math.exp(-z * z / (2.0 * (1.0 + b * z / (3.0 * sigma * math.sqrt(n))))))


def looks_uniform_in_ball(x, lam=3.0, z=6.0, tol=1e-12):
    """Statistical check that the rows of x are uniform in the unit ball.

    x: (n, D); lam, z: thresholds; tol: rounding slack on |x| <= 1
    -> Python bool: every |x_i| <= 1 + tol, radius_cdf_statistic(x) <= lam
    and |isotropy_statistic(x)| <= z.

    A correct sampler fails with probability at most
    radius_false_failure_bound(lam) + isotropy_false_failure_bound(n, D, z).
    """
    x = _points(x)
    if np.any(np.linalg.norm(x, axis=1) > 1.0 + tol):
        return False
    return bool(radius_cdf_statistic(x) <= lam and abs(isotropy_statistic(x)) <= z)
