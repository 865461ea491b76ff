"""Fidelity measurements of the safety benchmarks beyond the mean pixel change (issue 13)."""

import pytest
import torch

from benchmarks.safety_metrics import frechet_distance, max_pixel_change


def test_max_pixel_change_sees_a_local_edit_the_mean_hides():
    reference = torch.zeros(2, 3, 8, 8)
    edited = reference.clone()
    edited[1, 0, 3, 3] = 0.8
    assert max_pixel_change(edited, reference).tolist() == pytest.approx([0.0, 0.8])
    assert float((edited - reference).abs().mean()) < 0.01


def test_frechet_distance_is_zero_for_one_set_and_grows_with_a_mean_shift():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=gen)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a[:3], a[:3]) == pytest.approx(0.0, abs=1e-9)  # rank-deficient: still zero
    shifted = frechet_distance(a, a + 1.0)
    assert shifted == pytest.approx(6.0, rel=1e-6)  # ||mu1 - mu2||^2, covariances equal
    scaled = frechet_distance(a, 2 * a)  # tr(S + 4S - 2 * 2S) = tr(S), about 6 for unit variance
    assert 4.5 < scaled - float((a.mean(0) - 2 * a.mean(0)).pow(2).sum()) < 7.5
    with pytest.raises(ValueError, match="feature sets of one width"):
        frechet_distance(a, torch.randn(10, 5))
