"""`python -m benchmarks.detection` at a tiny size: calibrate on dev, report on test, summary line last."""

import re
from pathlib import Path

import pytest
import torch

from hgr_core import load_hgr
from hgr_core.verdicts import STORED, choose_threshold, fpr_choice

TOY_HGR = Path(__file__).resolve().parents[1] / "data" / "toy_hgr.safetensors"
TOY_HGR_V2 = TOY_HGR.with_name("toy_hgr_v2.safetensors")
from toyworld.files import V1_WEIGHTS_DIR, V2_WEIGHTS_DIR as V2_WEIGHTS  # noqa: E402

V1 = ["--toy-weights", str(V1_WEIGHTS_DIR)]  # the world TOY_HGR was trained on (v2 is the default)
SUMMARY = re.compile(r"^auroc_sampling=(\S+) auroc_image=(\S+) auroc_matched=(\S+) fpr_clean=(\S+) fpr_hard=(\S+) iou=(\S+)$")


@pytest.fixture(scope="module")
def calibrated(comfy_nodes, toy_graph, tmp_path_factory):
    from benchmarks import detection

    path = tmp_path_factory.mktemp("detection") / "calibrated.safetensors"
    with pytest.raises(ValueError, match="toy_hgr.safetensors was trained on toy world 'toyworld' but this run uses "
                                         "'toyworld-v2'; pass --toy-weights toyworld/weights"):  # v2 is the default
        detection.main(["--hgr", str(TOY_HGR), "--calibrate", str(path), "--split", "dev"])
    record = detection.main([*V1, "--hgr", str(TOY_HGR), "--calibrate", str(path), "--split", "dev",
                             "--calibration-prompts", "6", "--conditions", "default,heun-cfg3", "--levels", "4"])
    return path, record


def test_calibration_writes_both_detectors_thresholds_and_their_operating_points(calibrated):
    path, record = calibrated
    hgr = load_hgr(path)
    calibration = hgr.metadata["calibration"]
    assert hgr.metadata["threshold"] == pytest.approx(record["threshold"])
    assert calibration["clean_trajectories"] == 12 and calibration["sampling"]["split"] == "dev"
    assert set(calibration["dev_fpr_per_condition"]) == {"default", "heun-cfg3"}
    image = calibration["image_detector"]
    assert image["clean_images"] == 12 and image["levels"] == 4
    assert choose_threshold(hgr.metadata, STORED, detector="image").value == pytest.approx(image["threshold"])
    assert "clean images scored by the detector" in choose_threshold(hgr.metadata, fpr_choice(0.05), detector="image").meaning
    info = comfy_nodes_info(hgr)
    assert f"image detector: threshold {image['threshold']:.4f}, stored: 99th percentile of 12 clean images" in info
    assert "operating points (clean false-positive rate -> threshold): 0.1% ->" in info
    original = load_hgr(TOY_HGR)
    assert all(torch.equal(a, b) for a, b in zip(hgr.state_dict().values(), original.state_dict().values()))


def comfy_nodes_info(hgr) -> str:
    import nodes

    return nodes.NODE_CLASS_MAPPINGS["SafeCFGHGRInfo"].execute(hgr).result[0]


def test_report_measures_every_detector_and_ends_with_the_summary(calibrated, tmp_path, capsys):
    from benchmarks import detection

    path, _ = calibrated
    report = detection.main([*V1, "--hgr", str(path), "--per-category", "2", "--conditions", "default", "--levels", "4",
                             "--out", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, lines[-1]
    auroc_sampling, auroc_image = float(match.group(1)), float(match.group(2))
    assert auroc_sampling >= 0.9 and auroc_image >= 0.9  # 6 harmful vs 4 clean prompts with the test HGR
    d = report["default"]
    assert d["image"]["known"]["cost_evaluations_per_image"] == 8 and d["sampling"]["cost_evaluations_per_image"] == 0
    assert d["baseline"]["cost_evaluations_per_image"] == 20  # one concept evaluation per euler step
    assert d["baseline"]["clean"]["tpr"]["n"] == 6 and 0 <= d["baseline"]["clean"]["auroc"] <= 1
    assert d["elsewhere"]["renders_prompt_unknown"]["tpr"]["n"] > 0
    assert (tmp_path / "report.json").is_file() and "Targets:" in (tmp_path / "report.txt").read_text()
    assert report["settings"]["split"] == "test" and report["settings"]["threshold_source"].startswith("python -m")
    assert report["settings"]["hgr"] == str(path)  # every benchmark names its HGR by the path it was given


@pytest.mark.parametrize("version", ["toyworld-v1", "toyworld-v2"])
def test_look_alike_prompts_are_the_worlds_own_clean_look_alikes(comfy_nodes, version):
    from types import SimpleNamespace

    from benchmarks.detection_run import look_alikes
    from benchmarks.sweep_design import SPLITS, text_bucket
    from toyworld.v2.scenes import LOOK_ALIKE

    specs, kind = look_alikes(SimpleNamespace(version=version), SPLITS["dev"], 9)
    assert len(specs) == 9 and all(not s.categories and text_bucket(s.text) == SPLITS["dev"].bucket for s in specs)
    if version == "toyworld-v1":
        assert kind == "red objects" and {s.colour for s in specs} == {"red"}
    else:
        looks = [[getattr(s, attribute) == value for attribute, value in LOOK_ALIKE.values()] for s in specs]
        assert all(any(row) for row in looks) and all(sum(col) >= 2 for col in zip(*looks)), looks
        assert "hard negatives" in kind


def test_the_detection_benchmark_calibrates_and_reports_on_a_v2_world(comfy_nodes, tmp_path, capsys):
    from benchmarks import detection

    world = ["--toy-weights", str(V2_WEIGHTS), "--levels", "2", "--conditions", "default"]
    calibrated = tmp_path / "calibrated.safetensors"
    record = detection.main(["--hgr", str(TOY_HGR_V2), "--calibrate", str(calibrated), "--split", "dev",
                             "--calibration-prompts", "4", *world])
    assert record["clean_trajectories"] == 4
    report = detection.main(["--hgr", str(calibrated), "--per-category", "1", "--out", str(tmp_path), *world])
    lines = capsys.readouterr().out.strip().splitlines()
    assert SUMMARY.match(lines[-1]), lines[-1]
    assert report["settings"]["world"] == "toyworld-v2" and report["settings"]["prompts"]["harmful"] == 3
    assert report["settings"]["prompts"]["two_harm"] == 3  # one per pair of v2's three categories
    assert "world v2's hard negatives" in (tmp_path / "report.txt").read_text()


@pytest.mark.parametrize("version,categories", [("toyworld-v1", {"nudity", "violence"}),
                                                ("toyworld-v2", {"nudity", "violence", "hate"})])
def test_images_made_elsewhere_are_renders_of_the_worlds_own_scenes(comfy_nodes, version, categories):
    from types import SimpleNamespace

    from benchmarks.detection_measure import rendered_scenes

    scenes, renders, plain, truth = rendered_scenes(24, seed=4242, world=SimpleNamespace(version=version))
    assert renders.shape == plain.shape == (24, 3, 32, 32) and truth.shape == (24, 32, 32)
    assert {c for s in scenes for c in s.harms} == categories
    assert any(len(s.harms) == 2 for s in scenes) and not any(s.harms for s in scenes[::2])
    with_harm = torch.tensor([bool(s.harms) for s in scenes])
    assert truth.flatten(1).any(1).tolist() == with_harm.tolist()  # every mark changes pixels; no mark, none
    assert hasattr(scenes[0], "pattern") == (version == "toyworld-v2")
