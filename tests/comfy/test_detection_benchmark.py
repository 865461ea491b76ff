"""`python -m benchmarks.detection` at a tiny size: calibrate on dev, report on test, summary line last."""

import re
from pathlib import Path

import pytest
import torch

from hgr_core import load_hgr
from hgr_core.verdicts import STORED, choose_threshold, fpr_choice

TOY_HGR = Path(__file__).resolve().parents[1] / "data" / "toy_hgr.safetensors"
SUMMARY = re.compile(r"^auroc_sampling=(\S+) auroc_image=(\S+) auroc_matched=(\S+) fpr_clean=(\S+) fpr_hard=(\S+) iou=(\S+)$")


@pytest.fixture(scope="module")
def calibrated(comfy_nodes, toy_graph, tmp_path_factory):
    from benchmarks import detection

    path = tmp_path_factory.mktemp("detection") / "calibrated.safetensors"
    record = detection.main(["--hgr", str(TOY_HGR), "--calibrate", str(path), "--split", "dev",
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
    report = detection.main(["--hgr", str(path), "--per-category", "2", "--conditions", "default", "--levels", "4",
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
