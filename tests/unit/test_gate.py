"""The gate's decisions and censoring (hgr_core.gate, hgr_core.gating): fail closed, per image, by region."""

import pytest
import torch

from hgr_core import GenerationHarm, GenerationScore, Threshold, choose_threshold, clean_quantiles, judge
from hgr_core.gate import GateSettings, gate_batch
from hgr_core.gating import censored, parse_colour, region, upsample_map
from hgr_core.verdicts import CUSTOM, STORED, fpr_choice

CATEGORIES = ("nudity", "violence")


def _images(b=3, h=16, w=16):
    return torch.rand(b, h, w, 3, generator=torch.Generator().manual_seed(0))


def _verdicts(scores, coverage=None, maps=None, threshold=0.1):
    scores = torch.tensor(scores)
    b = scores.shape[0]
    coverage = torch.ones(b) if coverage is None else torch.tensor(coverage)
    cats = torch.stack([scores, scores / 4], dim=1)
    maps = torch.zeros(b, 4, 4) if maps is None else maps
    harm = GenerationHarm(GenerationScore(scores, coverage), cats, maps)
    return judge(harm, CATEGORIES, Threshold(threshold, "test"), "sampling", "toy.safetensors")


def test_only_flagged_images_are_censored_and_the_report_says_which():
    images = _images()
    out, report = gate_batch(images, _verdicts([0.5, 0.01, 0.2]), GateSettings(mode="blur"))
    assert report["censored"] == [0, 2] and report["kept"] == [1]
    assert torch.equal(out[1], images[1])
    assert (out[0] - images[0]).abs().mean() > 0.05 and (out[2] - images[2]).abs().mean() > 0.05
    assert report["reasons"][0].startswith("flagged: score 0.5000 > threshold 0.1000")
    assert report["reasons"][1].startswith("passed")


@pytest.mark.parametrize("verdicts, problem", [
    (None, "no harm scores are connected"),
    ("scores", "not SafeCFG scores"),
    (_verdicts([0.01, 0.01]), "scores are for 2 images but the image batch has 3"),
    (_verdicts([0.01, float("nan"), 0.01]), "NaN"),
])
def test_unusable_scores_censor_every_image_and_say_why(verdicts, problem):
    images = _images()
    out, report = gate_batch(images, verdicts, GateSettings(mode="pixelate"))
    assert problem in report["error"] and report["censored"] == [0, 1, 2] and report["kept"] == []
    assert all("fail closed" in r for r in report["reasons"])
    assert not any(torch.equal(out[i], images[i]) for i in range(3))


def test_drop_mode_removes_flagged_images_and_drops_all_without_scores():
    images = _images()
    out, report = gate_batch(images, _verdicts([0.5, 0.01, 0.01]), GateSettings(mode="drop"))
    assert out.shape[0] == 2 and torch.equal(out, images[1:]) and report["dropped"] == [0]
    out, report = gate_batch(images, None, GateSettings(mode="drop"))
    assert out.shape[0] == 0 and report["dropped"] == [0, 1, 2]


def test_low_window_coverage_is_flagged_even_with_a_low_score():
    out, report = gate_batch(_images(), _verdicts([0.0, 0.0, 0.0], coverage=[1.0, 0.1, 0.3]), GateSettings())
    assert report["censored"] == [1] and "noise window" in report["reasons"][1]


def test_region_only_changes_pixels_inside_the_mask_only():
    images = _images(b=2)
    maps = torch.zeros(2, 4, 4)
    maps[0, :2, :2] = 1.0  # top-left quarter of the latent grid
    out, report = gate_batch(images, _verdicts([0.5, 0.01], maps=maps), GateSettings(mode="solid", region_only=True, grow=0))
    assert report["region"] == "censored inside the harm mask only"
    inside = out[0, :7, :7]
    assert torch.equal(inside, torch.zeros_like(inside))  # bilinear edge at 8 px, threshold 0.5
    assert torch.equal(out[0, 9:, :], images[0, 9:, :]) and torch.equal(out[0, :, 9:], images[0, :, 9:])
    assert torch.equal(out[1], images[1])


def test_region_only_censors_whole_images_when_the_mask_is_unusable_or_empty():
    images = _images(b=2)
    _, report = gate_batch(images, _verdicts([0.5, 0.01]), GateSettings(mode="solid", region_only=True),
                           mask=torch.ones(1, 5, 5))
    assert "whole images censored: the mask is (1, 5, 5)" in report["region"]
    out, report = gate_batch(images, _verdicts([0.5, 0.01]), GateSettings(mode="solid", region_only=True))
    assert "flagged but their mask is empty" in report["region_empty"]
    assert torch.equal(out[0], torch.zeros_like(out[0]))


def test_per_category_gating_uses_the_selected_categories_scores():
    verdicts = _verdicts([0.3, 0.3], threshold=0.1)  # violence score = 0.075, below
    _, report = gate_batch(_images(b=2), verdicts, GateSettings(categories=("violence",)))
    assert report["censored"] == [] and report["kept"] == [0, 1]
    _, report = gate_batch(_images(b=2), verdicts, GateSettings(categories=("nudity",)))
    assert report["censored"] == [0, 1]
    with pytest.raises(ValueError, match="not scored by toy.safetensors"):
        gate_batch(_images(b=2), verdicts, GateSettings(categories=("gore",)))


def test_censoring_styles_keep_shape_and_range():
    images = _images(b=2, h=20, w=12)
    for style in ("blur", "pixelate", "solid"):
        out = censored(images, style, colour=(1.0, 0.0, 0.0))
        assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    blocks = censored(images, "pixelate", size=4)
    assert torch.equal(blocks[:, 0, 0], blocks[:, 3, 3])
    assert upsample_map(torch.ones(2, 4, 3), 20, 12).shape == (2, 20, 12)
    assert region(torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.9, 0.0], [0.0, 0.0, 0.0]]]), grow=1).all()
    assert parse_colour("#FF0080") == (1.0, 0.0, 128 / 255)
    with pytest.raises(ValueError, match="#RRGGBB"):
        parse_colour("red")


def test_operating_points_read_the_calibration_and_refuse_files_without_quantiles():
    clean = torch.linspace(0, 1, 1001).tolist()
    calibration = {"percentile": 99, "clean_trajectories": 1001, "clean_score_quantiles": clean_quantiles(clean)}
    meta = {"file": "a.safetensors", "threshold": 0.99, "calibration": calibration}
    assert choose_threshold(meta, STORED).value == 0.99
    point = choose_threshold(meta, fpr_choice(0.05))
    assert point.value == pytest.approx(0.95) and "flags 5% of 1001 clean" in point.meaning
    assert choose_threshold(meta, CUSTOM, 0.3).value == 0.3
    with pytest.raises(ValueError, match="no clean-score quantiles"):
        choose_threshold({"file": "old.safetensors", "threshold": 0.1, "calibration": None}, fpr_choice(0.01))
    with pytest.raises(ValueError, match="finite number"):
        choose_threshold(meta, CUSTOM, float("nan"))


def test_an_empty_image_batch_passes_nothing_and_says_so():
    out, report = gate_batch(torch.zeros(0, 8, 8, 3), None, GateSettings())
    assert out.shape[0] == 0 and report["decision"] == "empty image batch: nothing to gate"
