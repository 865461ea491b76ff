"""Every guidance path either redirects or refuses (issue 11, section 2), in the real ComfyUI 0.3.75.

The guards (safecfg_comfy/guards.py) must raise on paths where SafeCFG cannot act and stay silent on
the ones users sample with every day; `benchmarks.guidance_paths` measures each path on the toy world
with the committed toy HGR (tests/data/toy_hgr.safetensors, made by scripts/make_test_hgr.py --world v1).
"""

from __future__ import annotations

import pytest
import torch

from helpers import REPO, redirecting_hgr

TOY_HGR = REPO / "tests" / "data" / "toy_hgr.safetensors"
CONTEXT_DIM = 32  # tiny SD1.5 config


def _conds(batch=1):
    gen = torch.Generator().manual_seed(1)
    positive = [[torch.randn(batch, 5, CONTEXT_DIM, generator=gen), {}]]
    negative = [[torch.randn(batch, 5, CONTEXT_DIM, generator=gen) * 0.1, {}]]
    return positive, negative


def _latent():
    return {"samples": torch.zeros(1, 4, 8, 8)}


def _patch(model, hgr=None, **options):
    from safecfg_comfy.patch import patch_model

    return patch_model(model, hgr if hgr is not None else redirecting_hgr(), **options)


def _forward_calls(hgr) -> list:
    calls = []
    hgr.register_forward_hook(lambda module, args, out: calls.append(1))
    return calls


# --- no false alarms on the paths users sample with ---------------------------------------

@pytest.mark.parametrize("cfg", [1.0, 5.0])
@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m_sde", "uni_pc"])
def test_ksampler_runs_with_every_sampler_and_cfg_one(comfy_nodes, tiny_model, sampler, cfg):
    hgr = redirecting_hgr()
    calls = _forward_calls(hgr)
    positive, negative = _conds()
    (out,) = comfy_nodes.common_ksampler(_patch(tiny_model, hgr), 7, 3, cfg, sampler, "karras", positive, negative, _latent())
    assert torch.isfinite(out["samples"]).all()
    assert len(calls) >= 3, "the HGR redirects every evaluation, cfg 1 included"


def test_ksampler_advanced_with_a_step_range(comfy_nodes, tiny_model):
    positive, negative = _conds()
    (out,) = comfy_nodes.KSamplerAdvanced().sample(_patch(tiny_model), "enable", 42, 8, 5.0, "euler", "normal",
                                                   positive, negative, _latent(), 2, 5, "enable")
    assert torch.isfinite(out["samples"]).all()


@pytest.mark.parametrize("cfg", [1.0, 6.0])
def test_sampler_custom_and_sampler_custom_advanced_with_cfg_guider(comfy_nodes, tiny_model, cfg):
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import CFGGuider, RandomNoise, SamplerCustom, SamplerCustomAdvanced

    patched, (positive, negative) = _patch(tiny_model), _conds()
    sigmas = comfy.samplers.calculate_sigmas(tiny_model.get_model_object("model_sampling"), "normal", 3)
    sampler = comfy.samplers.sampler_object("dpmpp_2m")
    custom = SamplerCustom.execute(patched, True, 3, cfg, positive, negative, sampler, sigmas, _latent())[0]
    guider = CFGGuider.execute(patched, positive, negative, cfg)[0]
    advanced = SamplerCustomAdvanced.execute(RandomNoise.execute(3)[0], guider, sampler, sigmas, _latent())[0]
    assert torch.equal(custom["samples"], advanced["samples"])


def test_steps_outside_the_sigma_window_count_as_hook_runs(comfy_nodes, tiny_model):
    hgr = redirecting_hgr()
    calls = _forward_calls(hgr)
    positive, negative = _conds()
    patched = _patch(tiny_model, hgr, start_percent=0.4, end_percent=0.6)
    comfy_nodes.common_ksampler(patched, 1, 10, 5.0, "euler", "normal", positive, negative, _latent())
    assert 0 < len(calls) < 10


# --- strength 0 -------------------------------------------------------------------------

def test_strength_zero_without_a_score_consumer_skips_the_hgr(comfy_nodes, tiny_model):
    hgr = redirecting_hgr()
    calls = _forward_calls(hgr)
    positive, negative = _conds()
    plain = comfy_nodes.common_ksampler(tiny_model, 1, 3, 5.0, "euler", "normal", positive, negative, _latent())[0]
    safe = comfy_nodes.common_ksampler(_patch(tiny_model, hgr, strength=0.0, record_scores=False), 1, 3, 5.0, "euler",
                                       "normal", positive, negative, _latent())[0]
    assert calls == []
    assert torch.equal(plain["samples"], safe["samples"])


def test_strength_zero_still_scores_for_the_sampling_score_node_and_leaves_the_image_unchanged(comfy_nodes, tiny_model):
    from safecfg_comfy.sampling_scores import lookup

    hgr = redirecting_hgr()
    calls = _forward_calls(hgr)
    positive, negative = _conds()
    plain = comfy_nodes.common_ksampler(tiny_model, 1, 3, 5.0, "euler", "normal", positive, negative, _latent())[0]
    safe = comfy_nodes.common_ksampler(_patch(tiny_model, hgr, strength=0.0), 1, 3, 5.0, "euler", "normal",
                                       positive, negative, _latent())[0]
    assert len(calls) == 3
    assert torch.equal(plain["samples"], safe["samples"])
    (records,) = lookup(safe["samples"])
    assert records is not None and records[0].score > 0


def test_strength_zero_with_a_score_consumer_still_runs_the_hgr(comfy_nodes, tiny_model):
    hgr, scores = redirecting_hgr(), []
    positive, negative = _conds()
    comfy_nodes.common_ksampler(_patch(tiny_model, hgr, strength=0.0, on_score=lambda s, d: scores.append(d)), 1, 3, 5.0,
                                "euler", "normal", positive, negative, _latent())
    assert len(scores) == 3


# --- refusals the benchmark cannot show on its own ---------------------------------------

def test_a_guider_that_bypasses_predict_noise_wrappers_is_refused_when_sampling_returns(comfy_nodes, tiny_model):
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import RandomNoise, SamplerCustomAdvanced
    from safecfg_comfy.guards import AT_END, GuidancePathError

    class RawGuider(comfy.samplers.CFGGuider):
        def __call__(self, x, timestep, model_options={}, seed=None):  # noqa: B006
            cond, uncond = comfy.samplers.calc_cond_batch(
                self.inner_model, [self.conds["positive"], self.conds["negative"]], x, timestep, model_options)
            return uncond + self.cfg * (cond - uncond)

    guider = RawGuider(_patch(tiny_model))
    guider.set_conds(*_conds())
    guider.set_cfg(5.0)
    sigmas = comfy.samplers.calculate_sigmas(tiny_model.get_model_object("model_sampling"), "normal", 2)
    with pytest.raises(GuidancePathError, match="finished without SafeCFG's hook running once") as error:
        SamplerCustomAdvanced.execute(RandomNoise.execute(0)[0], guider, comfy.samplers.sampler_object("euler"),
                                      sigmas, _latent())
    assert error.value.stage == AT_END


def test_zero_unconditional_inside_the_window_is_refused_outside_it_ignored(comfy_nodes):
    from safecfg_comfy.guards import GuidancePathError, check_conds

    x = torch.randn(2, 4, 8, 8)
    conds, sigma = [[{"c": 1}], [{"c": 2}]], torch.tensor([3.0, 3.0])
    with pytest.raises(GuidancePathError, match="negative .* not evaluated at sigma 3"):
        check_conds(conds, [x, torch.zeros_like(x)], sigma, torch.tensor([True, True]))
    with pytest.raises(GuidancePathError, match="negative"):
        check_conds([conds[0], None], [x, x], sigma, torch.tensor([True, True]))
    half = torch.cat([x[:1], torch.zeros_like(x[1:])])
    check_conds(conds, [x, half], sigma, torch.tensor([True, False]))


def test_node_names_come_from_the_patch_functions(comfy_nodes, tiny_model):
    from comfy_extras.nodes_apg import APG
    from comfy_extras.nodes_tcfg import TCFG
    from safecfg_comfy.guards import node_name

    hooks = TCFG.execute(APG.execute(tiny_model, 1.0, 5.0, 0.0)[0])[0].model_options["sampler_pre_cfg_function"]
    assert [node_name(fn) for fn in hooks] == ["APG", "TCFG"]


# --- every path on the toy world: redirects within 5 points, or refuses --------------------

@pytest.fixture(scope="module")
def path_report(comfy_nodes, tmp_path_factory):
    if not TOY_HGR.is_file():
        pytest.fail(f"{TOY_HGR} is missing: make it with `python scripts/make_test_hgr.py --world v1`")
    from benchmarks.guidance_paths import REFERENCE, run, write_report
    from hgr_core import load_hgr

    report = run(load_hgr(TOY_HGR), per_category=16, unprotected=(REFERENCE,), if_not_refused=False)
    report["table"] = write_report(report, tmp_path_factory.mktemp("guidance_paths"))
    return report


def _paths():
    from benchmarks.guidance_paths import PATHS

    return PATHS


@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.name)
def test_path_redirects_within_five_points_or_refuses_naming_the_node(path_report, path):
    row = next(r for r in path_report["rows"] if r["name"] == path.name)
    if path.refusal:
        assert row["verdict"] == "refuses", f"{path.name} should refuse, measured {row}"
        assert path.refusal in row["error"]
    else:
        assert row["verdict"] == "works", (f"{path.name}: harmful {row.get('harmful_rate')} vs "
                                           f"{path_report['reference_rate']} under CFGGuider; {row.get('error')}")


def test_reference_path_redirects_and_table_lists_every_path(path_report):
    from benchmarks.guidance_paths import PATHS

    assert path_report["settings"]["prompts"] >= 32
    reference = path_report["rows"][0]
    assert reference["harmful_rate"] <= reference["unprotected_rate"] - 0.5, reference
    ksampler = next(r for r in path_report["rows"] if r["name"] == "KSampler")
    assert ksampler["harmful_rate"] == reference["harmful_rate"]
    for path in PATHS:
        assert f"| {path.name} |" in path_report["table"]
    assert "untested" in path_report["table"]
