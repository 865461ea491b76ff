"""The shift sweep (benchmarks/safety_sweep.py, `python -m benchmarks.safety --sweep`): Wilson
intervals, the dev/test divide of prompts and noise seeds, the worst-case and pooled arithmetic, and
a tiny run through the CLI with the trained test HGR (tests/data/toy_hgr.safetensors) on the
shipped toy world."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import REPO

SWEEP_SUMMARY = re.compile(r"^worst_harmful_safecfg=(\S+) worst_two_harm_safecfg=(\S+) "
                           r"worst_clean_fidelity=(\S+) worst_auroc=(\S+)$")
TEST_HGR = REPO / "tests" / "data" / "toy_hgr.safetensors"  # a toy world v1 HGR: the runs below name v1
V1 = ["--toy-weights", str(REPO / "toyworld" / "weights")]


def test_wilson_interval_matches_published_values_and_stays_inside_zero_one():
    from benchmarks.safety_metrics import wilson_interval

    low, high = wilson_interval(0, 128)
    assert low == 0 and high == pytest.approx(0.0291, abs=1e-4)  # z^2 / (n + z^2)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(4, 128) == pytest.approx((0.0122, 0.0775), abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="k=3, n=2"):
        wilson_interval(3, 2)


def test_the_clustered_interval_widens_by_the_scene_design_effect_and_covers_clustered_rates():
    import numpy as np

    from benchmarks.safety_metrics import clustered_wilson_interval, wilson_interval

    spread = clustered_wilson_interval([1] * 10, [10] * 10)  # leaks spread evenly: no clustering
    assert spread["design_effect"] == 1.0 and (spread["low"], spread["high"]) == pytest.approx(wilson_interval(10, 100))
    one = clustered_wilson_interval([10] + [0] * 9, [10] * 10)  # every leak in one scene
    assert one["design_effect"] == pytest.approx(100 / 9 * 99 / 100) and one["effective_n"] == pytest.approx(100 / 11)
    singles = clustered_wilson_interval([1] * 7 + [0] * 93, [1] * 100)  # one image per scene: plain Wilson
    assert singles["design_effect"] == pytest.approx(1.0) and singles["high"] == pytest.approx(wilson_interval(7, 100)[1])
    assert one["high"] > wilson_interval(10, 100)[1] + 0.2
    none = clustered_wilson_interval([0] * 12, [18] * 12)
    assert none["design_effect"] == 1.0 and none["high"] == pytest.approx(wilson_interval(0, 216)[1])
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clustered_wilson_interval([3], [2])
    # coverage: 60 scenes of 4 images, each scene's leak rate drawn with mean 5% (intra-scene correlation 1/3)
    rng, true, hits, plain_hits = np.random.default_rng(0), 0.05, 0, 0
    for _ in range(400):
        k = rng.binomial(4, rng.beta(0.1, 1.9, size=60))
        c = clustered_wilson_interval(k, [4] * 60)
        hits += c["low"] <= true <= c["high"]
        low, high = wilson_interval(int(k.sum()), 240)
        plain_hits += low <= true <= high
    assert hits / 400 >= 0.92 and plain_hits / 400 < 0.88  # measured 0.94 and 0.85: plain Wilson under-covers


def test_a_pooled_rate_sums_counts_and_is_clustered_only_when_every_count_has_scenes():
    from benchmarks.report_text import clustered_text
    from benchmarks.safety_metrics import pooled_rate, upper_bound, wilson_interval

    plain = pooled_rate([{"k": 1, "n": 60}, {"k": 3, "n": 68}])
    assert (plain["k"], plain["n"], plain["rate"]) == (4, 128, 4 / 128)
    assert (plain["low"], plain["high"]) == pytest.approx(wilson_interval(4, 128)) and "scene_high" not in plain
    assert upper_bound(plain) == plain["high"]
    scenes = [{"a": [1, 4], "b": [0, 56]}, {"a": [3, 4], "c": [0, 64]}]  # "a" is one cluster across both counts
    clustered = pooled_rate([{"k": 1, "n": 60}, {"k": 3, "n": 68}], scenes)
    assert clustered["scenes"] == 3 and clustered["design_effect"] > 1
    assert upper_bound(clustered) == clustered["scene_high"] > clustered["high"]
    low, high = clustered["scene_low"], clustered["scene_high"]
    assert clustered_text(clustered, " ", compact=True) == f" (scenes {low:.3f}, {high:.3f})"  # a table cell
    assert clustered_text(clustered).startswith("; clustered by scene (3 scenes, design effect ")
    assert clustered_text(plain) == ""
    assert "scene_high" not in pooled_rate([{"k": 1, "n": 60}, {"k": 3, "n": 68}], [scenes[0], None])  # an old report
    empty = pooled_rate([])
    assert empty["n"] == 0 and math.isnan(empty["rate"]) and math.isnan(upper_bound(empty))
    assert math.isnan(upper_bound({}))


def test_a_world_of_unknown_version_is_refused_not_measured_on_v1_prompts(comfy_nodes):
    from types import SimpleNamespace

    from benchmarks import sweep_design as sweep

    with pytest.raises(ValueError, match="toyworld-v3.*known: toyworld-v1, toyworld-v2"):
        sweep.default_source(SimpleNamespace(version="toyworld-v3"))


def test_the_benchmarks_measure_the_worlds_categories_the_hgr_redirects_and_refuse_an_hgr_for_none(comfy_nodes):
    from types import SimpleNamespace

    from benchmarks.safety_sweep import Vocabulary

    vocab = Vocabulary(("nudity", "violence", "hate"), ("square",), ("red",))
    hgr = SimpleNamespace(config=SimpleNamespace(categories=("hate", "nudity", "weapons")))
    assert vocab.redirected_by(hgr) == ["nudity", "hate"]  # the judge's order
    with pytest.raises(ValueError, match=r"the HGR redirects \['weapons'\], none of the world's"):
        vocab.redirected_by(SimpleNamespace(config=SimpleNamespace(categories=("weapons",))))


def test_dev_and_test_prompts_are_disjoint_held_out_and_the_larger_set_starts_with_the_smaller(comfy_nodes):
    from benchmarks import sweep_design as sweep
    from toyworld import prompts
    from toyworld.render import CATEGORIES

    pairs = sweep.harm_pairs(CATEGORIES, CATEGORIES)
    source = sweep.default_source()
    sets = {name: sweep.sweep_prompts(source, sweep.SPLITS[name], CATEGORIES, pairs, 8) for name in ("dev", "test")}
    test_scenes = set(prompts.scene_split("test"))
    for name in sweep.SETS:
        dev, test = {s.text for s in sets["dev"][name]}, {s.text for s in sets["test"][name]}
        assert len(dev) == len(test) == 8 * (len(CATEGORIES) if name != "two_harm" else len(pairs))
        assert not dev & test and not test & source.used, name
        assert all((s.shape, s.colour, s.background) in test_scenes for s in sets["test"][name] + sets["dev"][name])
    assert [sweep.spec_categories(s) for s in sets["test"]["harmful"][:2]] == [(c,) for c in CATEGORIES]
    assert all(sweep.spec_categories(s) == pairs[0] for s in sets["test"]["two_harm"])
    two = sets["test"]["two_harm"][0]
    assert prompts.attributes_for(two.safe_text)["categories"] == ()
    assert set(prompts.attributes_for(two.text)["categories"]) == set(pairs[0])
    bigger = sweep.sweep_prompts(source, sweep.SPLITS["test"], CATEGORIES, pairs, 16)
    assert all(bigger[n][:len(sets["test"][n])] == sets["test"][n] for n in ("clean", "two_harm"))


def test_each_condition_samples_prompts_of_its_own_whichever_conditions_run(comfy_nodes):
    """Pooling conditions pools independent prompts: no condition shares a prompt with another, a
    condition's block does not depend on the others selected, and the default's is the old shared set."""
    from benchmarks import sweep_design as sweep
    from toyworld.render import CATEGORIES

    pairs = sweep.harm_pairs(CATEGORIES, CATEGORIES)
    source, split = sweep.default_source(), sweep.SPLITS["dev"]
    blocks = sweep.condition_prompts(source, split, CATEGORIES, pairs, 4)
    assert list(blocks) == [c.name for c in sweep.CONDITIONS]
    for name in sweep.SETS:
        texts = [s.text for block in blocks.values() for s in block[name]]
        assert len(texts) == len(set(texts)) == len(sweep.CONDITIONS) * 4 * (len(CATEGORIES) if name != "two_harm" else len(pairs))
    for block in blocks.values():  # every block holds per_category prompts of each category and pair
        assert [sweep.spec_categories(s) for s in block["harmful"]].count(("nudity",)) == 4
        assert {sweep.spec_categories(s) for s in block["two_harm"]} == set(pairs)
    assert blocks["default"] == sweep.sweep_prompts(source, split, CATEGORIES, pairs, 4)
    chosen = sweep.select_conditions("ddim-cfg12,default")
    assert sweep.condition_prompts(source, split, CATEGORIES, pairs, 4, chosen) == {c.name: blocks[c.name] for c in chosen}


def test_asking_more_prompts_than_the_world_holds_names_the_flag_to_lower(comfy_nodes):
    from types import SimpleNamespace

    from benchmarks import sweep_design as sweep
    from toyworld.render import CATEGORIES

    v1 = sweep.default_source(SimpleNamespace(version="toyworld-v1"))  # 1728 distinct test-scene prompts
    with pytest.raises(ValueError, match=r"^--per-category 32: .* too few distinct prompts for 9 condition blocks .*"
                                         r"lower --per-category$"):
        sweep.condition_prompts(v1, sweep.SPLITS["test"], CATEGORIES, sweep.harm_pairs(CATEGORIES, CATEGORIES), 32)


def test_noise_seeds_of_dev_test_and_training_never_meet_even_in_torchs_32_bits(comfy_nodes):
    import comfy.sample

    from benchmarks import sweep_design as sweep

    empty = torch.zeros(1, 4, 8, 8)
    # torch keeps a seed's low 32 bits: "seeds >= 2**32" would replay seeds 0, 1, ... of training
    assert torch.equal(comfy.sample.prepare_noise(empty, 5), comfy.sample.prepare_noise(empty, 2**32 + 5))
    low32 = {name: {s % 2**32 for c in sweep.CONDITIONS for s in sweep.condition_seeds(split, c, 1000)}
             for name, split in sweep.SPLITS.items()}
    assert not low32["dev"] & low32["test"]
    assert min(min(v) for v in low32.values()) >= sweep.TRAINING_SEEDS  # training draws randrange(2**31)
    assert len(low32["test"]) == len(sweep.CONDITIONS) * 1000  # every condition has noise of its own
    first = {name: sweep.condition_seeds(split, sweep.CONDITIONS[0], 1)[0] for name, split in sweep.SPLITS.items()}
    noise = [comfy.sample.prepare_noise(empty, s) for s in (first["dev"], first["test"], first["test"] % 2**31)]
    assert not torch.equal(noise[0], noise[1]) and not torch.equal(noise[1], noise[2])


def _entry(name, where_k, where_n, two_rate, fidelity, auroc):
    def c(k, n):
        return {"k": k, "n": n, "rate": k / n, "low": 0.0, "high": 1.0}

    return {"condition": {"name": name}, "clean_fidelity": fidelity, "clean_pixel_diff": 0.01,
            "detection": {"auroc": auroc, "fpr": 0.0},
            "methods": {"cfg": {"harmful": {"rate": 1.0}},
                        "safecfg": {"harmful": {"rate": where_k / where_n, "where_cfg": c(where_k, where_n)},
                                    "two_harm": {"a+b": {"a": {"rate": two_rate}, "b": {"rate": 0.0},
                                                         "any": {"rate": two_rate}}}},
                        "only_a": {"two_harm": {"a+b": {"a": {"rate": 0.0}, "b": {"rate": 1.0},
                                                        "any": {"rate": 1.0}}}}}}


def test_worst_conditions_pooled_bound_and_targets_pass_or_miss_with_their_margins():
    from benchmarks.safety_report import summary_line
    from benchmarks.sweep_report import finish_sweep

    report = finish_sweep({"kind": "sweep", "conditions": [_entry("x", 0, 64, 0.0, 1.0, 0.99),
                                                           _entry("y", 4, 64, 0.05, 0.97, 1.0)]})
    assert report["worst"]["harmful_safecfg"] == {"condition": "y", "value": 4 / 64}
    assert report["worst"]["clean_fidelity"] == {"condition": "y", "value": 0.97}
    assert report["worst"]["auroc"] == {"condition": "x", "value": 0.99}
    assert report["worst"]["two_harm_only_selected"]["value"] == 0.0  # the selected harm, not the kept one
    assert report["pooled"]["k"] == 4 and report["pooled"]["n"] == 128
    targets = {t["key"]: t for t in report["targets"]}
    harmful = targets["harmful_safecfg"]
    assert not harmful["pass"] and harmful["margin"] == pytest.approx(0.03 - 4 / 64)
    assert harmful["passing_conditions"] == 1 and "worst condition (y; 1 of 2 pass)" in harmful["name"]
    assert targets["auroc"]["pass"] and targets["auroc"]["margin"] == pytest.approx(0.01)
    assert not targets["pooled_harmful_upper"]["pass"]  # 4/128: upper bound 0.078
    assert targets["pooled_harmful_upper"]["value"] == pytest.approx(0.0776, abs=1e-4)
    assert [t["key"] for t in report["conditions"][0]["targets"] if not t["pass"]] == []
    assert summary_line(report) == ("worst_harmful_safecfg=0.0625 worst_two_harm_safecfg=0.0500 "
                                    "worst_clean_fidelity=0.9700 worst_auroc=0.9900")
    assert "scene_high" not in report["pooled"]  # a report without scenes (before 2026-12-07) keeps Wilson's bound

    # the same counts with every leak in one scene (it appears under both conditions): wider, and the target uses it
    x, y = _entry("x", 0, 64, 0.0, 1.0, 0.99), _entry("y", 4, 64, 0.05, 0.97, 1.0)
    x["harmful_by_scene"] = {"a": [0, 4], **{f"s{i}": [0, 4] for i in range(15)}}
    y["harmful_by_scene"] = {"a": [4, 4], **{f"s{i}": [0, 4] for i in range(15)}}
    clustered = finish_sweep({"kind": "sweep", "conditions": [x, y]})
    pooled = clustered["pooled"]
    # deff = 16/15 * (3.75^2 + 15 * 0.25^2) / 128^2 / (128/127 * p (1 - p) / 128), p = 4/128: effective n ~31, not 128
    p = 4 / 128
    assert pooled["scenes"] == 16 and pooled["design_effect"] == pytest.approx(16 / 15 * 15 / 128 / (128 / 127 * p * (1 - p)))
    assert pooled["scene_high"] == pytest.approx(0.1597, abs=1e-4) and pooled["high"] == pytest.approx(0.0776, abs=1e-4)
    upper = {t["key"]: t for t in clustered["targets"]}["pooled_harmful_upper"]
    assert upper["value"] == pooled["scene_high"] and "scene clusters" in upper["name"]


def test_sweep_cli_writes_report_and_pictures_per_condition_and_ends_with_the_summary(comfy_nodes, tmp_path, capsys):
    from benchmarks import safety
    from benchmarks import sweep_design as sweep

    out = tmp_path / "sweep"
    report = safety.main([*V1, "--sweep", "--hgr", str(TEST_HGR), "--per-category", "2", "--conditions",
                          "default,euler_a-cfg9-30steps", "--steps", "3", "--split", "dev", "--out", str(out)])

    stdout = capsys.readouterr().out.strip().splitlines()
    assert SWEEP_SUMMARY.match(stdout[-1]) and stdout[-1] == safety.summary_line(report)
    assert (out / "report.txt").read_text().strip().splitlines()[-1] == stdout[-1]
    assert "targets" in stdout and any(line.startswith(("PASS", "MISS")) for line in stdout)
    saved = json.loads((out / "report.json").read_text())
    assert saved["summary"] == pytest.approx(report["summary"], nan_ok=True)

    s = report["settings"]
    assert s["split"] == "dev" and s["prompts"] == {"clean": 4, "harmful": 4, "two_harm": 2}
    assert s["pairs"] == ["nudity+violence"] and s["threshold"] > 0
    assert [e["condition"]["name"] for e in report["conditions"]] == ["default", "euler_a-cfg9-30steps"]
    for entry, condition in zip(report["conditions"], (sweep.CONDITIONS[0], sweep.CONDITIONS[3])):
        assert entry["condition"]["steps"] == 3 and entry["condition"]["sampler"] == condition.sampler
        assert entry["seeds"] == [sweep.condition_seeds(sweep.SPLITS["dev"], condition, 10)[i] for i in (0, -1)]
        methods = entry["methods"]
        assert set(methods) == {"cfg", "safecfg", "only_nudity"} and set(methods["only_nudity"]) == {"two_harm"}
        where = methods["safecfg"]["harmful"]["where_cfg"]
        assert where["n"] == round(methods["cfg"]["harmful"]["rate"] * 4)  # the prompts whose CFG image shows it
        assert where["n"] == 0 or where["low"] <= where["rate"] <= where["high"]
        assert set(methods["safecfg"]["harmful"]["per_category"]) == {"nudity", "violence"}
        assert set(methods["safecfg"]["two_harm"]["nudity+violence"]) == {"nudity", "violence", "any"}
        assert 0 <= entry["clean_pixel_diff"] and 0 <= entry["detection"]["auroc"] <= 1 and "fpr" in entry["detection"]
        assert [t["key"] for t in entry["targets"]] == ["harmful_safecfg", "two_harm_safecfg", "clean_fidelity",
                                                        "clean_pixel_diff", "auroc"]
        assert Image.open(entry["picture"]).size == (260 + 3 * 96, 16 + 6 * 96)  # CFG, SafeCFG, only nudity
    assert len(report["targets"]) == 6 and all(isinstance(t["pass"], bool) for t in report["targets"])
    pooled = report["pooled"]
    assert pooled["n"] == sum(e["methods"]["safecfg"]["harmful"]["where_cfg"]["n"] for e in report["conditions"])
    by_scene = [kn for e in report["conditions"] for kn in e["harmful_by_scene"].values()]
    assert sum(n for _, n in by_scene) == pooled["n"] and sum(k for k, _ in by_scene) == pooled["k"]
    text = (out / "report.txt").read_text()
    assert "clustered by scene" in text and f"{s['passes']} HGR pass(es) per step" in text.splitlines()[0]

    # --reformat rewrites report.txt from report.json alone (nothing sampled) and refuses what it cannot read
    (out / "report.txt").write_text("a table an older checkout wrote\n")
    capsys.readouterr()
    assert safety.main(["--reformat", str(out / "report.json")])["summary"] == saved["summary"]
    assert (out / "report.txt").read_text() == text and capsys.readouterr().out == text
    (tmp_path / "other.json").write_text(json.dumps({"kind": "toy_lora"}))
    with pytest.raises(ValueError, match=r"^--reformat: other.json is a report of kind 'toy_lora'; it reformats toy, "):
        safety.main(["--reformat", str(tmp_path / "other.json")])
    with pytest.raises(ValueError, match=r"^--reformat: cannot read missing.json \(No such file or directory\)$") as error:
        safety.main(["--reformat", str(tmp_path / "missing.json")])
    assert str(tmp_path) not in str(error.value)  # the file's name, not the machine's path


def test_passes_flag_reaches_every_safecfg_row_and_is_refused_where_it_would_not(comfy_nodes, tmp_path):
    from benchmarks import safety

    common = [*V1, "--sweep", "--hgr", str(TEST_HGR), "--per-category", "1", "--conditions", "default", "--steps", "3",
              "--split", "dev"]
    once = safety.main([*common, "--out", str(tmp_path / "once")])
    twice = safety.main([*common, "--passes", "2", "--out", str(tmp_path / "twice")])
    assert (once["settings"]["passes"], twice["settings"]["passes"]) == (1, 2)
    picture = Path("conditions") / "default.png"
    first, second = (np.asarray(Image.open(tmp_path / run / picture)) for run in ("once", "twice"))
    cfg_column = slice(260, 260 + 96)  # CFG's images: the same with any number of passes
    assert np.array_equal(first[:, cfg_column], second[:, cfg_column])
    assert not np.array_equal(first[:, 260 + 96:260 + 192], second[:, 260 + 96:260 + 192])  # SafeCFG's
    with pytest.raises(ValueError, match="--passes applies to the toy benchmark"):
        safety.main(["--sld-grid", "--hgr", str(TEST_HGR), "--passes", "2"])
    with pytest.raises(SystemExit):
        safety.main([*common, "--passes", "5"])
    with pytest.raises(ValueError, match="--cfg does not apply to --sweep or --lora"):  # it would be ignored
        safety.main([*common, "--cfg", "7"])
