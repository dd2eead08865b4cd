"""Synthetic confidence streams for tests and benchmarks.

A calibrated classifier's top-class confidence is bounded and skewed: most predictions sit close
to 1, a minority spread over the middle. A mixture of Beta distributions reproduces that shape;
drift is modelled the way it happens in production, as a shift of mass between the components
(traffic moving to inputs the model finds hard), not as a Gaussian mean shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from driftloop.errors import InvalidInputError


@dataclass(frozen=True)
class BetaMixture:
    """``sum_i weights[i] * Beta(alphas[i], betas[i])`` on [0, 1]."""

    weights: tuple[float, ...]
    alphas: tuple[float, ...]
    betas: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (len(self.weights) == len(self.alphas) == len(self.betas) > 0):
            raise InvalidInputError("a Beta mixture needs as many weights as alphas and betas")
        if any(w < 0 for w in self.weights) or not np.isclose(sum(self.weights), 1.0):
            raise InvalidInputError(f"mixture weights must be >= 0 and sum to 1: {self.weights}")
        if any(a <= 0 for a in self.alphas) or any(b <= 0 for b in self.betas):
            raise InvalidInputError("Beta parameters must be positive")

    @property
    def component_means(self) -> NDArray[np.float64]:
        a = np.asarray(self.alphas, dtype=np.float64)
        return a / (a + np.asarray(self.betas, dtype=np.float64))

    @property
    def mean(self) -> float:
        return float(np.dot(self.weights, self.component_means))

    def sample(self, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
        component = rng.choice(len(self.weights), size=n, p=np.asarray(self.weights))
        a = np.asarray(self.alphas)[component]
        b = np.asarray(self.betas)[component]
        values: NDArray[np.float64] = rng.beta(a, b)
        return values

    def cdf(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        total = np.zeros_like(x, dtype=np.float64)
        for w, a, b in zip(self.weights, self.alphas, self.betas, strict=True):
            total += w * stats.beta.cdf(x, a, b)
        return total

    def pdf(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        total = np.zeros_like(x, dtype=np.float64)
        for w, a, b in zip(self.weights, self.alphas, self.betas, strict=True):
            total += w * stats.beta.pdf(x, a, b)
        return total

    def with_weights(self, weights: tuple[float, ...]) -> BetaMixture:
        return BetaMixture(tuple(float(w) for w in weights), self.alphas, self.betas)

    def with_mean_drop(self, drop: float) -> BetaMixture:
        """Move mass from the most to the least confident component until the mean falls by
        ``drop``."""
        means = self.component_means
        high, low = int(np.argmax(means)), int(np.argmin(means))
        moved = drop / float(means[high] - means[low])
        if not 0 <= moved <= self.weights[high]:
            raise InvalidInputError(f"cannot lower the mean by {drop} with these components")
        weights = list(self.weights)
        weights[high] -= moved
        weights[low] += moved
        return self.with_weights(tuple(weights))

    def polarised(self, low_mass: float, alpha: float = 40.0, beta: float = 0.8) -> BetaMixture:
        """Same mean, different shape: ``low_mass`` more weight on the least confident
        component, balanced by a new, very confident ``Beta(alpha, beta)`` component (an
        overconfident model on shifted inputs)."""
        means = self.component_means
        high, low = int(np.argmax(means)), int(np.argmin(means))
        very_high = alpha / (alpha + beta)
        extra = low_mass * float(means[high] - means[low]) / (very_high - float(means[high]))
        taken = low_mass + extra
        if taken > self.weights[high]:
            raise InvalidInputError(f"low_mass={low_mass} is too large for this mixture")
        weights = [*self.weights, extra]
        weights[high] -= taken
        weights[low] += low_mass
        return BetaMixture(tuple(weights), (*self.alphas, alpha), (*self.betas, beta))


CALIBRATED_CLASSIFIER = BetaMixture(
    weights=(0.75, 0.17, 0.08), alphas=(14.0, 6.0, 3.0), betas=(1.2, 2.5, 3.0)
)
"""A realistic reference: the top-class confidence of a calibrated classifier (mean ~0.85)."""


@dataclass(frozen=True)
class ConfidenceScenario:
    """A stream that follows ``before`` for ``change_at`` samples, then moves to ``after``
    (abruptly, or linearly over ``ramp`` samples)."""

    name: str
    before: BetaMixture
    after: BetaMixture
    ramp: int = 0

    @property
    def drifts(self) -> bool:
        return self.before != self.after

    def generate(
        self, n_before: int, n_after: int, rng: np.random.Generator
    ) -> NDArray[np.float64]:
        old = self.before.sample(n_before + n_after, rng)
        if not self.drifts:
            return old
        new = self.after.sample(n_after, rng)
        share = np.ones(n_after)
        if self.ramp > 0:
            share = np.minimum(1.0, (np.arange(n_after) + 1.0) / self.ramp)
        take_new = rng.random(n_after) < share
        tail = np.where(take_new, new, old[n_before:])
        result: NDArray[np.float64] = np.concatenate([old[:n_before], tail])
        return result


def confidence_scenarios(
    reference: BetaMixture = CALIBRATED_CLASSIFIER,
) -> list[ConfidenceScenario]:
    """The benchmark scenarios: moderate (-0.05) and severe (-0.15) abrupt drops, a gradual
    slide to -0.10 over 2,000 samples, a shape change with the same mean, and no change."""
    return [
        ConfidenceScenario("abrupt moderate drop", reference, reference.with_mean_drop(0.05)),
        ConfidenceScenario("abrupt severe drop", reference, reference.with_mean_drop(0.15)),
        ConfidenceScenario("gradual slide", reference, reference.with_mean_drop(0.10), ramp=2_000),
        ConfidenceScenario("shape change", reference, reference.polarised(0.06)),
        ConfidenceScenario("no change", reference, reference),
    ]
