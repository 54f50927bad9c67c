"""Cohen et al. (2019)'s CERTIFY and PREDICT for hard (majority-vote) smoothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rsbench.certify.bounds import clopper_pearson_lower, top_two_pvalue
from rsbench.certify.sampling import BLOCK, PointSampler
from rsbench.certify.seeding import PHASE_ESTIMATE, PHASE_PREDICT, PHASE_SELECT
from rsbench.certify.sequential import SequentialSpec, p_for_radius, sequential_lower_bound

ABSTAIN = -1
CountsFn = Callable[[int, int], torch.Tensor]  # (num_samples, phase) -> class counts


@dataclass(frozen=True)
class CertifyEstimate:
    top: int        # class picked from the n0 selection samples
    count: int      # its count among the n estimation samples
    n: int
    p_lower: float  # one-sided Clopper-Pearson lower bound at alpha


@dataclass(frozen=True)
class PredictResult:
    prediction: int  # ABSTAIN when the binomial test does not reject p = 1/2 at alpha
    count_a: int
    count_b: int
    pvalue: float


def predict_row(res: PredictResult, method: str, params: dict[str, Any], n: int, alpha: float) -> dict[str, Any]:
    """The row of Cohen's PREDICT that every method writes: its prediction (-1 abstains), the method and its noise
    parameters, n, alpha, the top-two counts and the binomial p-value."""
    return {"predict": res.prediction, "method": method, **params, "n": n, "alpha": alpha, "count_a": res.count_a,
            "count_b": res.count_b, "pvalue": res.pvalue}


def cohen_certify(counts: CountsFn, n0: int, n: int, alpha: float) -> CertifyEstimate:
    """CERTIFY: c_A = argmax of n0 selection counts; p_A_lower from n fresh samples (Clopper-Pearson)."""
    top = int(torch.argmax(counts(n0, PHASE_SELECT)))
    count = int(counts(n, PHASE_ESTIMATE)[top])
    return CertifyEstimate(top, count, n, clopper_pearson_lower(count, n, alpha))


def certify_hard(sampler: PointSampler, n0: int, n: int, alpha: float, sequential: SequentialSpec | None,
                 radius_of: Callable[[float], float]) -> CertifyEstimate:
    """CERTIFY for a method whose radius is ``radius_of(p_A_lower)``: n estimation samples, or with
    ``sequential`` looks doubling from ``sequential.n_min`` that stop once ``radius_of`` reaches
    ``sequential.max_radius`` (bounds at alpha / #looks: still a certificate at level alpha). The estimate's
    ``n`` is the number of estimation samples drawn."""
    if sequential is None:
        return cohen_certify(sampler.hard, n0, n, alpha)
    top = int(torch.argmax(sampler.hard(n0, PHASE_SELECT)))
    res = sequential_lower_bound(lambda a, b: int(sampler.counts(b - a, PHASE_ESTIMATE, start=a)[top]),
                                 sequential.n_min, n, alpha, p_for_radius(radius_of, sequential.max_radius), BLOCK)
    return CertifyEstimate(top, res.successes, res.n_used, res.p_lower)


def cohen_predict(counts: CountsFn, n: int, alpha: float) -> PredictResult:
    """PREDICT: top-two counts from n samples; abstain when the two-sided binomial p-value > alpha."""
    c = counts(n, PHASE_PREDICT)
    top2 = torch.topk(c, k=min(2, len(c)))
    n_a = int(top2.values[0])
    n_b = int(top2.values[1]) if len(c) > 1 else 0
    p = top_two_pvalue(n_a, n_b)
    return PredictResult(int(top2.indices[0]) if p <= alpha else ABSTAIN, n_a, n_b, p)
