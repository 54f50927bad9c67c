"""Certificates: pure functions from estimated probabilities to a certified l2 radius."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtri
from scipy.stats import norm

from rsbench.errors import check_positive, require


def _check_p(name: str, p: float) -> None:
    require(0.0 <= p <= 1.0 and not math.isnan(p), f"{name}={p} is not a probability")


def _runner_up(p_lower: float, p_runner_upper: float | None) -> float:
    """The checked runner-up bound p_B: the given one, or 1 - p_A_lower (hard smoothing, two classes)."""
    _check_p("p_lower", p_lower)
    p_b = 1.0 - p_lower if p_runner_upper is None else p_runner_upper
    _check_p("p_runner_upper", p_b)
    return p_b


def gaussian_l2_radius(p_lower: float, sigma: float, p_runner_upper: float | None = None) -> float:
    """R = sigma / 2 * (Phi^-1(p_A_lower) - Phi^-1(p_B_upper)), and 0 when that is not positive.

    Cohen et al. (2019), Theorem 1; with p_B = 1 - p_A (the default, hard smoothing) it is
    sigma * Phi^-1(p_A_lower). For soft smoothing (expected scores in [0, 1]) the same form holds
    because Phi^-1 of each smoothed score is 1/sigma-Lipschitz (Salman et al. 2019, Lemma 2).
    Valid in l2 for noise N(0, sigma^2 I) when p_A_lower bounds the top class from below and
    p_B_upper bounds every other class from above.
    """
    check_positive("sigma", sigma)
    p_b = _runner_up(p_lower, p_runner_upper)
    if p_lower <= p_b:
        return 0.0
    return float(sigma / 2.0 * (ndtri(p_lower) - ndtri(p_b)))  # ndtri = Phi^-1 (norm.ppf without its overhead)


def idrs_radius(p_lower: float, p_runner_upper: float, lipschitz: float) -> float:
    """IDRS Theorem 3: R = 1/(2L) (Phi^-1(g_y_lower) - Phi^-1(g_y'_upper)), 0 when not positive.

    L is eq. (5)'s Lipschitz constant of Phi^-1(g_i) (rsbench.certify.lipschitz.idrs_lipschitz); the
    scores must lie in [p_min, 1 - p_min]. With L = 1/sigma (Lip(sigma) = 0) it is exactly the soft
    Gaussian radius :func:`gaussian_l2_radius` (Remark 1), which is how it is computed.
    """
    check_positive("lipschitz", lipschitz)
    return gaussian_l2_radius(p_lower, 1.0 / lipschitz, p_runner_upper)


def mog_paper_radius(p_lower: float, sigmas: Sequence[float], p_runner_upper: float | None = None) -> float:
    """The MoG paper's Theorem 2: R = max_k sigma_k / 2 * (Phi^-1(p_A) - Phi^-1(p_B)).

    Sound for the paper's K-fold *convolution* (noise N(0, sum_k sigma_k^2 I)), where it is loose.
    NOT sound when each sample picks one component (a mixture): see DESIGN.md's halfspace example.
    """
    return gaussian_l2_radius(p_lower, max(sigmas), p_runner_upper)


def mog_sum_radius(p_lower: float, sigmas: Sequence[float], p_runner_upper: float | None = None) -> float:
    """Exact certificate for eps = eps_1 + ... + eps_K, eps_k ~ N(0, sigma_k^2 I): that is N(0, s^2 I) with
    s = sqrt(sum_k sigma_k^2), so Cohen's radius with sigma = s (tight for a halfspace)."""
    return gaussian_l2_radius(p_lower, math.sqrt(sum(s * s for s in sigmas)), p_runner_upper)


def mixture_margin(radius: float, top_lower: np.ndarray, others_upper: np.ndarray, weights: np.ndarray,
                   sigmas: np.ndarray) -> float:
    """Worst-case margin of the mixture-smoothed classifier after an l2 shift of norm ``radius``.

    For component k the top class keeps probability >= Phi(Phi^-1(a_k) - R / sigma_k) and any other
    class c gets at most Phi(Phi^-1(b_kc) + R / sigma_k) (each Phi^-1(g_k) is 1/sigma_k-Lipschitz), so
    the mixture margin is at least
    sum_k w_k Phi(Phi^-1(a_k) - R/sigma_k) - max_c sum_k w_k Phi(Phi^-1(b_kc) + R/sigma_k).
    """
    top = float(np.sum(weights * norm.cdf(norm.ppf(top_lower) - radius / sigmas)))
    others = (weights[:, None] * norm.cdf(norm.ppf(others_upper) + radius / sigmas[:, None])).sum(axis=0)
    return top - float(np.max(others))


def _largest_radius(margin: Callable[[float], float], scale: float, tol: float) -> float:
    """The largest R >= 0 with ``margin(R) > 0`` for a margin decreasing in R (bracket from ``scale``, then
    bisection to ``tol``); 0 if ``margin(0) <= 0``, inf if it stays positive beyond 1e6."""
    if margin(0.0) <= 0:
        return 0.0
    lo, hi = 0.0, scale
    while margin(hi) > 0:  # bracket: the margin tends to -1 as R grows
        lo, hi = hi, 2.0 * hi
        if hi > 1e6:
            return math.inf  # only when a probability bound is exactly 1 (never from a finite-sample bound)
    while hi - lo > tol * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if margin(mid) > 0 else (lo, mid)
    return lo


def _check_mixture(weights: Sequence[float], sigmas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    w, s = np.asarray(weights, dtype=float), np.asarray(sigmas, dtype=float)
    require(w.ndim == 1 and w.shape == s.shape, "weights and sigmas need one entry per component")
    require(bool(np.all(s > 0)) and abs(w.sum() - 1) < 1e-9 and bool(np.all(w >= 0)),
            "sigmas must be > 0 and weights a probability vector")
    return w, s


def mixture_componentwise_radius(top_lower: Sequence[float], others_upper: Sequence[Sequence[float]] | None,
                                 weights: Sequence[float], sigmas: Sequence[float], tol: float = 1e-9) -> float:
    """Sound l2 radius for a mixture of Gaussians N(0, sigma_k^2 I) with weights w_k (one component per draw).

    ``top_lower[k]`` lower-bounds the top class's probability (or expected score) under component k;
    ``others_upper[k][c]`` upper-bounds each other class c under component k (hard smoothing: ``None``,
    meaning 1 - top_lower[k], where the condition becomes sum_k w_k Phi(Phi^-1(a_k) - R/sigma_k) > 1/2).
    Returns the largest R with a positive :func:`mixture_margin` (bisection to ``tol``), 0 if none.
    With K = 1 it equals Cohen's radius sigma / 2 (Phi^-1(a) - Phi^-1(b)).
    """
    w, s = _check_mixture(weights, sigmas)
    a = np.asarray(top_lower, dtype=float)
    require(a.shape == w.shape, "top_lower needs one entry per component")
    require(bool(np.all((a >= 0) & (a <= 1))), f"top_lower {a} is not a vector of probabilities")
    b = (1.0 - a)[:, None] if others_upper is None else np.asarray(others_upper, dtype=float).reshape(len(a), -1)
    if len(a) == 1:  # closed form (Cohen et al.), so K = 1 reproduces standard RS exactly
        return gaussian_l2_radius(float(a[0]), float(s[0]), float(b[0].max()))
    return _largest_radius(lambda r: mixture_margin(r, a, b, w, s), float(s.max()), tol)


def mixture_worst_case(p: float, radius: float, weights: np.ndarray, sigmas: np.ndarray) -> float:
    """min sum_k w_k Phi(Phi^-1(p_k) - R/sigma_k) over all (p_1..p_K) in [0, 1]^K with sum_k w_k p_k = p.

    The least probability the top class can keep after an l2 shift of norm R under the mixture, when only
    its pooled probability p is known: each component obeys Cohen's bound, and the split of p across
    components is the adversary's. Each term is convex in p_k, so the minimum has equal derivatives
    exp(c_k z_k - c_k^2 / 2) = lambda (c_k = R / sigma_k, z_k = Phi^-1(p_k)), i.e.
    z_k = t sigma_k + R / (2 sigma_k) for one t, found by root-finding on sum_k w_k Phi(z_k) = p.
    This is the Neyman-Pearson worst case when the classifier may also see which component was drawn: a
    halfspace per component, offsets set by one likelihood-ratio threshold.
    """
    if radius <= 0 or p <= 0 or p >= 1:
        return float(p)
    half = radius / (2.0 * sigmas)
    span = (40.0 + float(half.max())) / float(sigmas.min())  # Phi(+-40) is 0 or 1 in floating point
    t = brentq(lambda u: float(np.dot(weights, norm.cdf(u * sigmas + half))) - p, -span, span, xtol=1e-12)
    return float(np.dot(weights, norm.cdf(t * sigmas - half)))


def mixture_pooled_radius(p_lower: float, weights: Sequence[float], sigmas: Sequence[float],
                          p_runner_upper: float | None = None, tol: float = 1e-9) -> float:
    """Sound l2 radius for a mixture of Gaussians from the *pooled* probability alone (``certificate=pooled``).

    With p_A >= ``p_lower`` and every other class <= p_B = ``p_runner_upper`` (hard: 1 - p_lower) under the
    mixture, at shift R the top class keeps >= W(p_A, R) = :func:`mixture_worst_case` and any other class
    gets <= 1 - W(1 - p_B, R) (the same bound for its complement). The radius is the largest R with
    W(p_A, R) + W(1 - p_B, R) > 1. Sound for every input dimension (the adversary of
    :func:`mixture_worst_case` is at least as strong as any classifier of x alone) and tight as the dimension
    grows, when ||noise||^2 reveals the component. One Clopper-Pearson bound on all n draws at alpha,
    instead of K bounds on n/K draws at alpha/K. With K = 1 it equals Cohen's radius.
    """
    w, s = _check_mixture(weights, sigmas)
    p_b = _runner_up(p_lower, p_runner_upper)
    if len(w) == 1:
        return gaussian_l2_radius(p_lower, float(s[0]), p_b)
    return _largest_radius(lambda r: mixture_worst_case(p_lower, r, w, s) + mixture_worst_case(1 - p_b, r, w, s) - 1,
                           float(s.max()), tol)


def mahalanobis_radius(p_lower: float, sigma: float, logdet: float, d: int,
                       p_runner_upper: float | None = None) -> float:
    """DSmooth, Lemma 4.5: MAHL(x_hat | x) <= sigma / (2 det(Sigma)^(1/(2d))) (Phi^-1(pA) - Phi^-1(pB)).

    For noise N(0, sigma^2 Sigma / det(Sigma)^(1/d)): whitening by Sigma~^(-1/2), Sigma~ = Sigma / det^(1/d),
    turns it into N(0, sigma^2 I), where Cohen's radius R0 holds, and ||Sigma~^(-1/2) delta|| =
    det(Sigma)^(1/(2d)) MAHL(delta). (Alg. 1 of the paper returns R0 without the det factor; this is the
    lemma.) ``logdet`` = log det Sigma.
    """
    return gaussian_l2_radius(p_lower, sigma, p_runner_upper) * math.exp(-logdet / (2.0 * d))


def ellipsoid_l2_ball(mahalanobis: float, min_eig: float) -> float:
    """Largest l2 ball inside {delta : delta^T Sigma^-1 delta <= R^2}: R sqrt(lambda_min(Sigma))."""
    require(min_eig > 0, f"lambda_min(Sigma)={min_eig} must be > 0")
    return float(mahalanobis * math.sqrt(min_eig))


def laplace_l1_radius(p_lower: float, scale: float, p_runner_upper: float | None = None) -> float:
    """Teng et al. (2020), Thm. 1: l1 radius max(b/2 log(pA/pB), -b log(1 - pA + pB)) for Laplace(0, b) noise.

    With pB = 1 - pA (hard smoothing) the second term is -b log(2 (1 - pA)), tight for a halfspace whose
    normal is a coordinate axis. 0 when pA <= pB.
    """
    check_positive("scale", scale)
    p_b = _runner_up(p_lower, p_runner_upper)
    if p_lower <= p_b:
        return 0.0
    dp = scale / 2.0 * math.log(p_lower / p_b) if p_b > 0 else math.inf
    tv = -scale * math.log(1.0 - p_lower + p_b) if 1.0 - p_lower + p_b > 0 else math.inf
    return float(max(dp, tv))
