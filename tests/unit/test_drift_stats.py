"""Drift statistics: PSI, the size-aware alert bound and its false-alarm rate, measured by
drawing windows from the population the reference was drawn from."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.telemetry.drift import (
    Histograms,
    Observation,
    Reference,
    alert_bound,
    chi2_quantile,
    compare,
    input_summary,
    observation,
    psi,
)

# a population: 10 classes, unevenly common, confident scores, mid-grey inputs
POPULATION = {
    "top1": np.array([0.16, 0.12, 0.11, 0.10, 0.10, 0.09, 0.09, 0.08, 0.08, 0.07]),
    "score": np.array([0, 0, 0, 0.01, 0.02, 0.03, 0.06, 0.1, 0.2, 0.58]),
    "brightness": np.array([0.0, 0.02, 0.1, 0.25, 0.3, 0.2, 0.1, 0.03, 0.0, 0.0]),
    "contrast": np.array([0.0, 0.05, 0.2, 0.35, 0.25, 0.1, 0.05, 0.0, 0.0, 0.0]),
}


def drawn(n: int, rng: np.random.Generator, population=POPULATION) -> Histograms:
    h = Histograms(10, detection=False)
    h.n = n
    for name, p in population.items():
        setattr(h, name, rng.multinomial(n, p / p.sum()))
    return h


def reference(m: int, rng: np.random.Generator) -> Reference:
    doc = drawn(m, rng).to_reference("test")
    parsed = Reference.parse(doc)
    assert parsed is not None
    return parsed


def false_alarm_rate(n: int, windows: int, *, adjusted: bool, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    ref = reference(360, rng)
    alarms = 0
    for _ in range(windows):
        c = compare(ref, drawn(n, rng), psi_alert=0.25, significance=0.001)
        if adjusted:
            alarms += bool(c.over)
        else:
            alarms += any(v > 0.25 for v in c.psi.values())
    return alarms / windows


@pytest.mark.parametrize("n", [50, 200, 500])
def test_false_alarms_stay_under_one_percent_of_windows_at_the_defaults(n):
    rate = false_alarm_rate(n, 2000, adjusted=True)
    naive = false_alarm_rate(n, 2000, adjusted=False)
    print(
        f"windows of {n} drawn like a reference of 360: {rate:.2%} over the size-aware bound, "
        f"{naive:.2%} over a fixed PSI 0.25"
    )
    assert rate < 0.01
    if n == 50:
        assert naive > 0.2  # a fixed bound would alarm all the time on small windows


def test_shifted_windows_are_over_the_bound():
    rng = np.random.default_rng(2)
    ref = reference(360, rng)
    dark = {**POPULATION, "brightness": np.array([0.9, 0.1, 0, 0, 0, 0, 0, 0, 0, 0.0])}
    one_class = {**POPULATION, "top1": np.eye(10)[3]}
    mix = {**POPULATION, "top1": np.array([0.34, 0.33, 0.33, 0, 0, 0, 0, 0, 0, 0.0])}
    for population, metric in ((dark, "input"), (one_class, "top1"), (mix, "top1")):
        for n in (50, 500):
            c = compare(ref, drawn(n, rng, population), psi_alert=0.25, significance=0.001)
            assert metric in c.over, (metric, n, c)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    shares = [0.25, 0.25, 0.25, 0.25]
    assert psi(shares, [250, 250, 250, 250], 1000) == pytest.approx(0.0, abs=1e-12)
    small = psi(shares, [300, 250, 250, 200], 1000)
    large = psi(shares, [700, 100, 100, 100], 1000)
    assert 0 < small < large


def test_the_bound_grows_as_windows_shrink():
    bounds = [alert_bound(0.25, 10, n, 500, 0.001) for n in (50, 200, 500, 100_000)]
    assert bounds == sorted(bounds, reverse=True)
    assert bounds[-1] == pytest.approx(0.25 + chi2_quantile(0.999, 9) * (1e-5 + 1 / 500))
    assert chi2_quantile(0.999, 9) == pytest.approx(27.88, rel=0.03)  # tables: 27.877


def test_observations_of_answers_and_tensors():
    tensor = np.full((1, 8, 8, 1), -128, dtype=np.int8)
    tensor[0, :4] = 127
    brightness, contrast = input_summary(tensor)
    assert brightness == pytest.approx(0.5) and contrast == pytest.approx(0.5)
    answer = {"top": [{"index": 3, "score": 0.9}]}
    assert observation(answer, tensor) == Observation(3, 0.9, None, brightness, contrast)
    found = {"detections": [{"index": 1, "score": 0.4}, {"index": 2, "score": 0.8}]}
    assert observation(found, tensor).top1 == 2 and observation(found, tensor).count == 2
    assert observation({"detections": []}, tensor).top1 is None


def test_reference_round_trip_and_malformed_references():
    h = Histograms(3, detection=True)
    for obs in (Observation(0, 0.9, 1, 0.5, 0.1), Observation(None, None, 0, 0.2, 0.05)):
        h.add(obs)
    ref = Reference.parse(h.to_reference("x"))
    assert ref is not None and ref.images == 2 and ref.classes == 3
    assert ref.shares["top1"] == (0.5, 0.0, 0.0, 0.5)
    assert Reference.parse({"images": 0}) is None
    assert Reference.parse({**h.to_reference("x"), "score": [2.0]}) is None
