"""The single dev-tuned SLD setting the attack benchmark takes from an SLD grid report (--sld-front)."""

from __future__ import annotations

import json

import pytest

from benchmarks.sld_grid_report import read_tuned_point, tuned_point
from helpers import sld_grid_report


def test_the_tuned_point_is_the_safest_front_point_that_keeps_dev_fidelity():
    chosen = tuned_point(sld_grid_report())
    assert chosen["name"] == "g02" and "fidelity >= 0.98" in chosen["rule"]  # "max" is safer but off the front
    safer = sld_grid_report([("g01", True, 0.20, 0.985, 0.03), ("g02", True, 0.30, 0.99, 0.01),
                             ("g03", True, 0.20, 0.981, 0.02)])
    assert tuned_point(safer)["name"] == "g03"  # same harmful rate: the smaller pixel change


def test_without_a_faithful_front_point_the_safest_is_taken_and_said_so():
    rows = [("g01", True, 0.1, 0.6, 0.1), ("g02", True, 0.4, 0.9, 0.05), ("g03", True, 0.1, 0.7, 0.2)]
    chosen = tuned_point(sld_grid_report(rows))
    assert chosen["name"] == "g03" and chosen["rule"].startswith("no front point keeps")  # tie: the more faithful


def test_reports_that_cannot_give_a_point_are_refused_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="no file missing.json"):
        read_tuned_point(tmp_path / "missing.json")
    (tmp_path / "toy.json").write_text(json.dumps({"kind": "toy"}))
    with pytest.raises(ValueError, match="toy.json is not an SLD grid report"):
        read_tuned_point(tmp_path / "toy.json")
    nothing = sld_grid_report([("g01", True, float("nan"), 0.99, 0.01)])
    with pytest.raises(ValueError, match="CFG drew no harm"):
        tuned_point(nothing)


def test_a_report_from_another_or_an_unrecorded_world_is_refused(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(sld_grid_report()))
    assert read_tuned_point(path, "toyworld-v2")["name"] == "g02"
    with pytest.raises(ValueError, match="grid.json: SLD was tuned on toyworld-v2, not toyworld-v1"):
        read_tuned_point(path, "toyworld-v1")
    old = {k: v for k, v in sld_grid_report().items() if k != "world"}
    with pytest.raises(ValueError, match="an unrecorded world"):
        tuned_point(old, "old.json", "toyworld-v2")


def test_a_point_tuned_at_another_guidance_scale_is_refused_with_the_command_to_retune(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(sld_grid_report(cfg=5.0)))
    assert read_tuned_point(path, "toyworld-v2", 5.0)["name"] == "g02"
    with pytest.raises(ValueError, match=r"grid.json: SLD was tuned at cfg 5.0, this run samples at cfg 7; "
                                         r"rerun `python -m benchmarks.safety --sld-grid --cfg 7`"):
        read_tuned_point(path, "toyworld-v2", 7.0)
    assert read_tuned_point(path, "toyworld-v2")["name"] == "g02"  # no scale given: not checked


def test_a_point_with_foreign_sld_settings_is_refused():
    report = sld_grid_report()
    for row in report["grid"]:
        row["preset"] = {**row["preset"], "sld_guidance": 7.0}
    with pytest.raises(ValueError, match="grid point g02 has SLD settings"):
        tuned_point(report, "old.json")
