"""SLD tuned on dev (benchmarks/sld_grid.py, `python -m benchmarks.safety --sld-grid`): the grid, the
tuned front on synthetic numbers, and a tiny run through the CLI on the shipped toy world with the
trained test HGR (tests/data/toy_hgr.safetensors), recording what was sampled on which split."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re

import pytest
from PIL import Image

from helpers import REPO

TEST_HGR = REPO / "tests" / "data" / "toy_hgr.safetensors"
GRID_SUMMARY = re.compile(r"^sld_front_points=\S+ sld_front_dominating=\S+ safecfg_harmful=\S+ "
                          r"safecfg_pixel_diff=\S+ sld_safest_harmful=\S+ sld_safest_pixel_diff=\S+$")
NAN = float("nan")


def _numbers(harmful, fidelity, pixel_diff):
    return {"harmful": {"rate": harmful}, "clean_fidelity": fidelity, "clean_pixel_diff": pixel_diff}


def test_grid_holds_the_four_named_presets_by_name_and_no_setting_twice(comfy_nodes):
    from benchmarks.sld_grid import GRID_AXES, sld_grid
    from hgr_core import SLD_PRESETS

    grid = sld_grid()
    assert [p.name for p in grid[:4]] == ["weak", "medium", "strong", "max"]
    assert all(p.preset == SLD_PRESETS[p.name] for p in grid[:4])
    assert len({p.preset for p in grid}) == len(grid) == len({p.name for p in grid})
    product = len(list(itertools.product(*GRID_AXES.values())))
    assert 12 <= len(grid) <= 24 and len(grid) == 4 + product - 1  # "max" is one of the product's settings


def test_tuned_front_is_exactly_the_points_no_other_point_dominates():
    from benchmarks.sld_grid_report import tuned_front

    points = {"safe_but_blurry": _numbers(0.0, 0.9, 0.10),
              "safe_and_sharp": _numbers(0.0, 1.0, 0.05),  # dominates safe_but_blurry: 0% ties go to fidelity
              "sharper_twin": _numbers(0.0, 1.0, 0.05),  # identical: neither dominates the other
              "weak": _numbers(0.5, 1.0, 0.01),  # less safe but changes less: on the front
              "worse_weak": _numbers(0.5, 1.0, 0.02),  # dominated by weak
              "idle": _numbers(1.0, 1.0, 0.0),  # removes nothing, changes nothing: on the front
              "unmeasured": _numbers(NAN, 1.0, 0.0)}  # CFG drew no harm: cannot be ruled out
    assert tuned_front(points) == ["safe_and_sharp", "sharper_twin", "weak", "idle", "unmeasured"]
    assert tuned_front({"only": _numbers(0.3, 0.5, 0.5)}) == ["only"]


def test_front_target_counts_front_points_that_dominate_safecfg_and_the_toy_targets_use_it():
    from benchmarks.safety_report import toy_targets
    from benchmarks.sld_grid_report import front_target

    entry = {"safecfg": _numbers(0.0, 1.0, 0.002),
             "points": {"g01": _numbers(0.0, 1.0, 0.001), "weak": _numbers(0.4, 1.0, 0.0005)}}
    t = front_target(entry)
    assert not t["pass"] and t["value"] == 1.0 and t["detail"] == {"g01": True, "weak": False}
    method = {"harmful": {"rate": 0.0, "per_category": {"nudity": 0.0}, "where_cfg_harmful": {}},
              "unseen": {"rate": 0.0}, "clean": {"pixel_diff": 0.01}, "clean_fidelity": 1.0,
              "harmful_and_unseen_rate": 0.0}
    report = {"methods": {"cfg": method, "safecfg": method, "sld_max": {**method, "clean": {"pixel_diff": 0.001}}},
              "detection": {"strength_1": {"auroc": 1.0}}}
    names = [t["name"] for t in toy_targets(report)]
    assert any(n.startswith("SLD presets") for n in names) and not any("tuned front" in n for n in names)
    names = [t["name"] for t in toy_targets({**report, "sld_front": entry})]
    assert any("SLD tuned front" in n for n in names) and not any(n.startswith("SLD presets") for n in names)


@pytest.fixture(scope="module")
def grid_run(comfy_nodes, tmp_path_factory):
    """A tiny grid run through the CLI (2 prompts per category, 3 steps) with every world.sample call recorded."""
    import toyworld
    from benchmarks import safety

    world, calls = toyworld.load_world(weights_dir=REPO / "toyworld" / "weights"), []  # v1, as TEST_HGR
    sample = world.sample

    def recording(model, prompts, negative=None, seeds=None, *args, **kwargs):
        calls.append((list(prompts), [int(s) for s in seeds]))
        return sample(model, prompts, negative, seeds, *args, **kwargs)

    world.sample = recording
    out, stdout = tmp_path_factory.mktemp("sld_grid"), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setattr(toyworld, "load_world", lambda *a, **k: world)
        report = safety.main(["--sld-grid", "--hgr", str(TEST_HGR), "--per-category", "2", "--steps", "3", "--cfg", "7",
                              "--out", str(out)])
    return report, list(calls), out, stdout.getvalue()  # calls copied: later tests sample the same world


def _pairs(split: dict) -> set:
    texts = split["prompts"]["clean"] + split["prompts"]["harmful"]
    first, last = split["noise_seeds"]
    assert last - first + 1 == len(texts)
    return set(zip(texts, range(first, last + 1)))


def test_dev_and_test_sample_disjoint_prompts_and_seeds_and_only_the_front_reaches_test(grid_run):
    from benchmarks.sld_grid import sld_grid
    from benchmarks.sld_grid_report import tuned_front

    report, calls, _, _ = grid_run
    dev, test = _pairs(report["splits"]["dev"]), _pairs(report["splits"]["test"])
    sampled = {pair for texts, seeds in calls for pair in zip(texts, seeds)}
    assert sampled == dev | test  # nothing sampled that the report does not declare
    assert not {t for t, _ in dev} & {t for t, _ in test}
    assert not {s % 2**32 for _, s in dev} & {s % 2**32 for _, s in test}
    assert report["splits"]["dev"]["counts"] == {"clean": 4, "harmful": 4}

    grid = report["grid"]
    assert [p["name"] for p in grid] == [p.name for p in sld_grid()]
    front = tuned_front({p["name"]: p["dev"] for p in grid})
    assert report["front"] == front and 0 < len(front) < len(grid)
    assert [p["name"] for p in grid if "test" in p] == front == [p["name"] for p in grid if p["on_front"]]
    test_texts = {t for t, _ in test}
    on_test = [c for c in calls if set(c[0]) <= test_texts]
    # one call each (batch 128 > 8 prompts): CFG, the front's points, SafeCFG at 0.25, 0.5, 0.75, 1
    assert len(on_test) == 1 + len(front) + 4 and len(calls) == 1 + len(grid) + len(on_test)


def test_grid_cli_writes_report_table_and_fronts_plot_and_ends_with_the_summary(grid_run):
    from benchmarks import safety

    report, _, out, printed = grid_run
    stdout = printed.strip().splitlines()
    assert "targets" in stdout and any(line.startswith("SLD ") for line in stdout)
    assert GRID_SUMMARY.match(stdout[-1]) and stdout[-1] == safety.summary_line(report)
    assert (out / "report.txt").read_text().strip().splitlines()[-1] == stdout[-1]
    assert json.loads((out / "report.json").read_text())["summary"] == pytest.approx(report["summary"], nan_ok=True)
    assert Image.open(out / "fronts.png").size == (720, 460)
    assert [p["strength"] for p in report["safecfg_sweep"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert report["world"] == "toyworld-v1"  # the attack benchmark's --sld-front checks it
    assert report["settings"]["condition"]["cfg"] == 7.0 and report["settings"]["condition"]["steps"] == 3  # and this
    cfg = report["safecfg_sweep"][0]["test"]
    assert cfg["clean_pixel_diff"] == 0 and cfg["clean_fidelity"] == 1.0
    for p in report["grid"]:
        for numbers in (p["dev"], p.get("test")):
            if numbers is not None:
                h = numbers["harmful"]
                assert 0 <= h["k"] <= h["n"] <= 4 and (h["n"] == 0 or h["low"] <= h["rate"] <= h["high"])
                assert set(numbers["per_category"]) == {"nudity", "violence"} and numbers["clean_pixel_diff"] >= 0
    assert report["summary"]["sld_front_points"] == len(report["front"])
    assert set(report["dominance"]) == set(report["front"])
    assert report["targets"][0]["value"] == sum(report["dominance"].values())


def test_toy_run_given_the_grid_report_checks_the_tuned_front_instead_of_the_presets(grid_run, tmp_path):
    from benchmarks import safety

    _, _, out, _ = grid_run
    report = safety.main(["--toy-weights", str(REPO / "toyworld" / "weights"), "--hgr", str(TEST_HGR),
                          "--per-category", "1", "--steps", "3", "--skip-baselines", "--sld-front", str(out / "report.json"),
                          "--out", str(tmp_path / "toy")])
    assert report["sld_front"]["points"].keys() == set(json.loads((out / "report.json").read_text())["front"])
    names = [t["name"] for t in report["targets"]]
    assert sum("SLD tuned front" in n for n in names) == 1 and not any(n.startswith("SLD presets") for n in names)
