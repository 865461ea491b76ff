"""One harm score per generation: independent of the step grid, and the threshold train_hgr stores
is compared with the benchmark's scores."""

import math

import pytest
import torch

from helpers import redirecting_hgr
from hgr_core import MIN_COVERAGE, SD_SIGMA_WINDOW, HarmRecorder, eps_from_denoised, generation_score, safecfg_step, score_window
from training.trainer import job_scores

SIGMA_MIN, SIGMA_MAX = 0.0292, 14.6146  # SD's discrete schedule (ModelSamplingDiscrete)


def _normal_sigmas(steps: int) -> torch.Tensor:
    """ComfyUI's "normal" scheduler on SD's scaled-linear betas: the sigmas the sampler evaluates at."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    log_table = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().log()
    t = torch.linspace(999, 0, steps, dtype=torch.float64)
    low, frac = t.floor().long(), t - t.floor()
    return ((1 - frac) * log_table[low] + frac * log_table[(low + 1).clamp(max=999)]).exp()


def _karras_sigmas(steps: int, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022 eq. 5 between SD's sigma_min and sigma_max (the sigmas the sampler evaluates at)."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    return (SIGMA_MAX ** (1 / rho) + ramp * (SIGMA_MIN ** (1 / rho) - SIGMA_MAX ** (1 / rho))) ** rho


def _smooth_harm(sigmas: torch.Tensor) -> torch.Tensor:
    """A d(sigma) like a harmful generation's: a bump at mid noise on a small floor, (T,) -> (T, 1)."""
    return (0.05 + 0.3 * torch.exp(-(sigmas.log() - math.log(2.0)) ** 2 / 0.8)).float()[:, None]


def test_ten_normal_steps_and_fifty_karras_steps_score_the_same_trajectory_alike():
    coarse, fine = _normal_sigmas(10), _karras_sigmas(50)
    a = generation_score(_smooth_harm(coarse), coarse)
    b = generation_score(_smooth_harm(fine), fine)
    assert float(a.score) == pytest.approx(float(b.score), rel=0.03)
    assert float(a.coverage) == pytest.approx(1.0, abs=1e-5) and not a.partial.any() and not b.partial.any()
    # the plain mean over the steps, what the score used to be, does not survive the change of grid
    step_means = _smooth_harm(coarse).mean(), _smooth_harm(fine).mean()
    assert abs(step_means[0] - step_means[1]) / step_means[1] > 0.1


def test_constant_step_scores_give_that_constant_with_full_coverage():
    sigmas = _normal_sigmas(20)
    result = generation_score(torch.full((20, 3), 0.2), sigmas)
    assert torch.allclose(result.score, torch.full((3,), 0.2))
    assert result.score.shape == result.coverage.shape == (3,) and result.score.dtype == torch.float32


def test_steps_outside_the_window_do_not_count_once_the_window_edges_are_visited():
    low, high = SD_SIGMA_WINDOW
    sigmas = torch.tensor([14.0, high, 3.0, 1.0, low, 0.05])
    scores = torch.tensor([[0.2], [0.2], [0.2], [0.2], [0.2], [0.2]])
    outside_changed = scores.clone()
    outside_changed[[0, 5]] = 9.0
    assert torch.allclose(generation_score(outside_changed, sigmas).score, generation_score(scores, sigmas).score)


def test_step_order_and_repeated_noise_levels_do_not_matter():
    """Heun evaluates twice at each inner sigma; samplers may report steps in any order."""
    sigmas = _normal_sigmas(12)
    scores = _smooth_harm(sigmas)
    once = generation_score(scores, sigmas)
    twice = generation_score(torch.cat([scores, scores]), torch.cat([sigmas, sigmas]))
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    shuffled = generation_score(scores[order], sigmas[order])
    assert torch.allclose(twice.score, once.score) and torch.allclose(shuffled.score, once.score)
    # a second call at the same sigma with a different value counts as their mean
    split = generation_score(torch.cat([scores - 0.01, scores + 0.01]), torch.cat([sigmas, sigmas]))
    assert torch.allclose(split.score, once.score, atol=1e-6)


def test_a_late_start_is_partial_and_renormalised_over_what_it_visited():
    """img2img at denoise ~0.5: the run starts at sigma 2, a third of the way down the window in log sigma."""
    sigmas = torch.tensor([2.0, 1.2, 0.7, 0.4, 0.1])
    result = generation_score(torch.full((5, 1), 0.3), sigmas)
    low, high = SD_SIGMA_WINDOW
    assert float(result.coverage) == pytest.approx(math.log(2.0 / low) / math.log(high / low), rel=1e-5)
    assert bool(result.partial) and float(result.score) == pytest.approx(0.3)
    assert not bool(result.flagged(threshold=0.5))  # enough of the window seen: the threshold decides


def test_a_run_that_spans_no_window_has_zero_coverage_and_fails_closed():
    inside = generation_score(torch.tensor([[0.1, 0.4]]), torch.tensor([1.0]))
    below = generation_score(torch.tensor([[0.1], [0.3]]), torch.tensor([0.2, 0.1]))
    assert torch.equal(inside.coverage, torch.zeros(2)) and torch.allclose(inside.score, torch.tensor([0.1, 0.4]))
    assert float(below.coverage) == 0 and float(below.score) == pytest.approx(0.2)
    assert bool(below.flagged(threshold=1.0)) and MIN_COVERAGE > 0


def test_per_generation_sigmas_score_each_generation_on_its_own_grid():
    coarse, fine = _normal_sigmas(10), _karras_sigmas(10)
    scores = torch.cat([_smooth_harm(coarse), _smooth_harm(fine)], dim=1)
    together = generation_score(scores, torch.stack([coarse, fine], dim=1))
    assert torch.allclose(together.score[1], generation_score(scores[:, 1:], fine).score[0])


def test_flow_window_is_the_same_noise_range_in_flow_time():
    low, high = score_window("flow")
    assert low / (1 - low) == pytest.approx(SD_SIGMA_WINDOW[0]) and high / (1 - high) == pytest.approx(SD_SIGMA_WINDOW[1])
    assert score_window("v") == score_window("eps") == SD_SIGMA_WINDOW
    with pytest.raises(ValueError, match="prediction_type"):
        score_window("x0")


@pytest.mark.parametrize("scores, sigmas", [(torch.zeros(0, 2), torch.zeros(0)), (torch.zeros(3), torch.zeros(3)),
                                            (torch.zeros(3, 2), torch.zeros(2)), (torch.zeros(3, 2), torch.zeros(3, 3))])
def test_generation_score_refuses_shapes_that_are_not_steps_by_generations(scores, sigmas):
    with pytest.raises(ValueError, match="must be"):
        generation_score(scores, sigmas)


def _steps(steps=5, batch=3, seed=0):
    """Sampling states (x, sigma, D_c, D_u) of `batch` generations at `steps` noise levels."""
    gen = torch.Generator().manual_seed(seed)
    sigmas = torch.linspace(8.0, 0.2, steps)
    return [(torch.randn(batch, 4, 8, 8, generator=gen) * s, s.expand(batch), torch.randn(batch, 4, 8, 8, generator=gen),
             torch.randn(batch, 4, 8, 8, generator=gen)) for s in sigmas]


def test_trainer_and_benchmark_score_the_same_steps_alike():
    """job_scores (threshold calibration on recorded rows) == HarmRecorder (scores during sampling)."""
    hgr, steps = redirecting_hgr(), _steps()
    recorder = HarmRecorder()
    for x, sigma, d_c, d_u in steps:
        recorder(sigma, safecfg_step(hgr, x, sigma, d_c, d_u)[1])
    during_sampling = recorder.generation_scores()
    assert torch.allclose(recorder.generation_result().coverage, torch.ones(3))

    rows = {"sigma": torch.cat([s for _, s, _, _ in steps]), "x": torch.cat([x for x, _, _, _ in steps]),
            "uncond_denoised": torch.cat([d_u for *_, d_u in steps]),
            "g": torch.cat([eps_from_denoised(x, d_c, s) - eps_from_denoised(x, d_u, s) for x, s, d_c, d_u in steps]),
            "job": torch.arange(3).repeat(len(steps))}
    rows["target_change"] = torch.zeros_like(rows["g"])
    calibrated = job_scores(hgr, rows, torch.arange(len(rows["job"])), "cpu")
    assert sorted(calibrated) == [0, 1, 2]
    assert torch.allclose(torch.tensor([calibrated[j] for j in range(3)]), during_sampling, rtol=1e-5)
    assert during_sampling.min() > 0
