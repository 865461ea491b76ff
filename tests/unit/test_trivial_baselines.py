"""The trivial baselines of issue 13 (benchmarks.trivial_baselines, safecfg_comfy.pixel_redirect):
redirection math, the palette rule, the per-pixel gate's training, thresholds and weights file."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from benchmarks.trivial_baselines import (GateRule, PaletteRule, PixelGate, StepMeanRecorder, load_pixel_gate,
                                          palette_pixels, palette_scores, save_pixel_gate, train_pixel_gate)
from safecfg_comfy.pixel_redirect import redirect_cond


def test_redirect_zeroes_or_reverses_the_guidance_only_where_the_mask_fires():
    cond, uncond = torch.full((1, 4, 2, 2), 3.0), torch.full((1, 4, 2, 2), 1.0)
    mask = torch.tensor([[[[True, False], [False, False]]]])
    zero = redirect_cond(cond, uncond, mask, "zero")
    reverse = redirect_cond(cond, uncond, mask, "reverse")
    assert zero[0, :, 0, 0].tolist() == [1.0] * 4 and zero[0, :, 1, 1].tolist() == [3.0] * 4
    assert reverse[0, :, 0, 0].tolist() == [-1.0] * 4  # D_u - (D_c - D_u): CFG pushes away
    with pytest.raises(ValueError, match="mode must be one of"):
        redirect_cond(cond, uncond, mask, "invert")


def test_palette_rule_fires_on_the_latent_blocks_holding_a_harm_colour():
    images = torch.full((2, 3, 8, 8), 0.9)
    images[1, :, 5, 6] = torch.tensor([150, 0, 10]) / 255.0  # one blood pixel in image 1
    hits = palette_pixels(images, [(150, 0, 10)])
    assert hits.shape == (2, 1, 8, 8) and int(hits.sum()) == 1 and bool(hits[1, 0, 5, 6])
    assert palette_scores(images, [(150, 0, 10)]).tolist() == pytest.approx([0.0, 1 / 64])
    rule = PaletteRule(lambda latents: images, [(150, 0, 10)], latent_factor=4)
    mask = rule(None, None, torch.zeros(2, 4, 2, 2), torch.zeros(2, 4, 2, 2))
    assert mask.shape == (2, 1, 2, 2) and mask[1, 0, 1, 1] and int(mask.sum()) == 1
    assert rule.last_score.tolist() == pytest.approx([0.0, 1 / 64])


def _synthetic_cache(n_jobs: int = 40, steps: int = 4):
    """Jobs alternating clean/harmful; harmful rows carry a bright spot in g's channel 0 at one pixel."""
    gen = torch.Generator().manual_seed(0)
    jobs = [SimpleNamespace(categories=("nudity",) if i % 2 else (), steered=False, split="val" if i % 5 == 0 else "train")
            for i in range(n_jobs)]
    job = torch.arange(n_jobs).repeat_interleave(steps)
    g = torch.randn(len(job), 4, 6, 6, generator=gen)
    harmful = torch.tensor([bool(jobs[j].categories) for j in job.tolist()])
    g[harmful, 0, 2, 3] += 8.0
    data = {"g": g, "x": torch.randn(len(job), 4, 6, 6, generator=gen), "sigma": torch.rand(len(job), generator=gen) * 5 + 0.1,
            "job": job}
    return data, jobs, harmful


def test_pixel_gate_learns_a_per_pixel_signal_and_calibrates_on_clean_validation_rows(tmp_path):
    data, jobs, harmful = _synthetic_cache()
    gate = train_pixel_gate(data, jobs, ["nudity"], steps=300, batch=64)
    assert gate.thresholds.item() >= 0.5
    rule = GateRule(gate)
    sigma = data["sigma"]
    # D_u - D_c = sigma * g reproduces the cache's g inside the rule
    fired = rule(data["x"], sigma, torch.zeros_like(data["g"]), sigma.view(-1, 1, 1, 1) * data["g"])
    assert fired.shape == (len(sigma), 1, 6, 6)
    assert fired[harmful].flatten(1).any(1).float().mean() > 0.9
    assert fired[~harmful].flatten(1).any(1).float().mean() < 0.1
    assert bool(fired[harmful][:, 0, 2, 3].all())

    path = tmp_path / "gate.safetensors"
    save_pixel_gate(gate, path)
    again = load_pixel_gate(path)
    assert again.categories == ("nudity",) and torch.equal(again.thresholds, gate.thresholds)
    with torch.no_grad():
        assert torch.equal(again(data["g"][:3], sigma[:3], data["x"][:3]), gate(data["g"][:3], sigma[:3], data["x"][:3]))


def test_pixel_gate_file_errors_name_the_file_not_its_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pixel gate missing\.safetensors not found") as missing:
        load_pixel_gate(tmp_path / "missing.safetensors")
    assert str(tmp_path) not in str(missing.value)
    from safetensors.torch import save_file

    other = tmp_path / "hgr.safetensors"
    save_file({"w": torch.zeros(1)}, str(other), metadata={"format": "safecfg-hgr/1"})
    with pytest.raises(ValueError, match=r"hgr\.safetensors is not a pixel gate"):
        load_pixel_gate(other)


def test_step_mean_recorder_averages_steps_and_refuses_an_empty_run():
    recorder = StepMeanRecorder()
    with pytest.raises(RuntimeError, match="no step was scored"):
        recorder.generation_scores()
    recorder(torch.tensor([0.2, 0.4]))
    recorder(torch.tensor([0.4, 0.0]))
    assert recorder.generation_scores().tolist() == pytest.approx([0.3, 0.2])
    recorder.reset()
    assert recorder.steps == []


def test_pixel_gate_has_no_spatial_context():
    gate = PixelGate(4, ("nudity", "violence"))
    assert all(m.kernel_size == (1, 1) for m in gate.modules() if isinstance(m, torch.nn.Conv2d))
