"""SafeCFGApply inside the real ComfyUI 0.3.75: sampling equivalences, window, dtypes, composition."""

import pytest
import torch

from helpers import identity_hgr, redirecting_hgr, run_node

CONTEXT_DIM = 32  # tiny SD1.5 config


def _conditioning(batch=1, seed=1):
    gen = torch.Generator().manual_seed(seed)
    positive = [[torch.randn(batch, 5, CONTEXT_DIM, generator=gen), {}]]
    negative = [[torch.randn(batch, 5, CONTEXT_DIM, generator=gen) * 0.1, {}]]
    return positive, negative


def _ksampler(comfy_nodes, model, cfg=5.0, steps=3, sampler="euler", scheduler="normal", batch=1, size=(8, 8)):
    positive, negative = _conditioning(batch)
    latent = {"samples": torch.zeros(batch, 4, *size)}
    (out,) = comfy_nodes.common_ksampler(model, 42, steps, cfg, sampler, scheduler, positive, negative, latent)
    return out["samples"]


def _apply(comfy_nodes, model, hgr, strength=1.0, start=0.0, end=1.0, categories="all"):
    return run_node(comfy_nodes, "SafeCFGApply", model=model, hgr=hgr, strength=strength,
                    start_percent=start, end_percent=end, categories=categories)[0]


def test_pack_registers_its_nodes_through_load_custom_node(comfy_nodes):
    for node_id in ("SafeCFGLoadHGR", "SafeCFGApply"):
        assert node_id in comfy_nodes.NODE_CLASS_MAPPINGS
    info = comfy_nodes.NODE_CLASS_MAPPINGS["SafeCFGApply"].GET_NODE_INFO_V1()
    assert info["output"] == ["MODEL"]
    assert list(info["input"]["required"]) == ["model", "hgr", "strength", "start_percent", "end_percent", "categories"]
    assert info["input"]["optional"]["passes"][1] | {"min": 1, "max": 4, "default": 1} == info["input"]["optional"]["passes"][1]


@pytest.mark.parametrize("sampler, scheduler", [("euler", "normal"), ("dpmpp_2m", "karras"), ("uni_pc", "simple"), ("ddim", "ddim_uniform")])
def test_identity_hgr_reproduces_plain_cfg(comfy_nodes, tiny_model, sampler, scheduler):
    plain = _ksampler(comfy_nodes, tiny_model, sampler=sampler, scheduler=scheduler)
    safe = _ksampler(comfy_nodes, _apply(comfy_nodes, tiny_model, identity_hgr()), sampler=sampler, scheduler=scheduler)
    assert (safe - plain).abs().max().item() < 1e-5


def test_strength_zero_reproduces_plain_cfg_for_any_weights(comfy_nodes, tiny_model):
    plain = _ksampler(comfy_nodes, tiny_model)
    safe = _ksampler(comfy_nodes, _apply(comfy_nodes, tiny_model, redirecting_hgr(), strength=0.0))
    assert (safe - plain).abs().max().item() < 1e-5


def test_redirecting_hgr_changes_the_sample(comfy_nodes, tiny_model):
    plain = _ksampler(comfy_nodes, tiny_model)
    safe = _ksampler(comfy_nodes, _apply(comfy_nodes, tiny_model, redirecting_hgr()))
    assert (safe - plain).abs().mean().item() > 1e-3
    assert torch.isfinite(safe).all()


def _count_hgr_calls(hgr):
    calls = []
    hgr.register_forward_hook(lambda module, args, out: calls.append(float(args[1][0])))
    return calls


def test_hook_only_runs_inside_the_start_end_window(comfy_nodes, tiny_model):
    import comfy.samplers

    steps, start, end = 10, 0.3, 0.6
    sampling = tiny_model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "normal", steps)[:-1]
    high, low = sampling.percent_to_sigma(start), sampling.percent_to_sigma(end)
    expected = [float(s) for s in sigmas if low <= s <= high]
    assert 0 < len(expected) < steps

    hgr = redirecting_hgr()
    calls = _count_hgr_calls(hgr)
    _ksampler(comfy_nodes, _apply(comfy_nodes, tiny_model, hgr, start=start, end=end), steps=steps)
    assert calls == pytest.approx(expected, rel=1e-5)

    calls.clear()
    _ksampler(comfy_nodes, _apply(comfy_nodes, tiny_model, hgr), steps=steps)
    assert len(calls) == steps


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_batch_three_non_square_cfg_one(comfy_nodes, dtype):
    from benchmarks.random_models import sd15_model

    model = sd15_model(dtype=dtype)
    hgr = redirecting_hgr()
    calls = _count_hgr_calls(hgr)
    out = _ksampler(comfy_nodes, _apply(comfy_nodes, model, hgr), cfg=1.0, steps=2, batch=3, size=(40, 24))
    assert out.shape == (3, 4, 40, 24)
    assert torch.isfinite(out).all()
    assert len(calls) == 2, "cfg=1 must still evaluate uncond (CFG1 optimisation disabled) and redirect"


def test_apply_never_mutates_the_input_model(comfy_nodes, tiny_model):
    before = repr(tiny_model.model_options)
    patched = _apply(comfy_nodes, tiny_model, redirecting_hgr())
    assert patched is not tiny_model
    assert repr(tiny_model.model_options) == before
    assert len(patched.model_options["sampler_pre_cfg_function"]) == 1


def test_hook_holds_no_state_between_runs(comfy_nodes, tiny_model):
    patched = _apply(comfy_nodes, tiny_model, redirecting_hgr())
    assert torch.equal(_ksampler(comfy_nodes, patched), _ksampler(comfy_nodes, patched))


def test_works_with_ksampler_advanced_and_sampler_custom(comfy_nodes, tiny_model):
    from comfy_extras.nodes_custom_sampler import SamplerCustom
    import comfy.samplers

    hgr = redirecting_hgr()
    patched = _apply(comfy_nodes, tiny_model, hgr)
    positive, negative = _conditioning()
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (adv,) = comfy_nodes.KSamplerAdvanced().sample(patched, "enable", 42, 6, 5.0, "euler", "normal",
                                            positive, negative, latent, 1, 4, "disable")
    sigmas = comfy.samplers.calculate_sigmas(tiny_model.get_model_object("model_sampling"), "karras", 4)
    sampler = comfy.samplers.sampler_object("dpmpp_2m")
    custom = SamplerCustom.execute(patched, True, 42, 5.0, positive, negative, sampler, sigmas, latent)
    plain = SamplerCustom.execute(tiny_model, True, 42, 5.0, positive, negative, sampler, sigmas, latent)
    for out in (adv["samples"], custom[0]["samples"]):
        assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()
    assert (custom[0]["samples"] - plain[0]["samples"]).abs().mean() > 1e-3


@pytest.mark.parametrize("other", ["RescaleCFG", "CFGZeroStar"])
def test_composes_with_cfg_patches_applied_after_it(comfy_nodes, tiny_model, other):
    from comfy_extras.nodes_cfg import CFGZeroStar
    from comfy_extras.nodes_model_advanced import RescaleCFG

    def patch(model):
        if other == "RescaleCFG":
            return RescaleCFG().patch(model, 0.7)[0]
        return CFGZeroStar.execute(model)[0]

    hgr = redirecting_hgr()
    safe_only = _ksampler(comfy_nodes, _apply(comfy_nodes, tiny_model, hgr))
    other_only = _ksampler(comfy_nodes, patch(tiny_model))
    both = _ksampler(comfy_nodes, patch(_apply(comfy_nodes, tiny_model, hgr)))
    assert torch.isfinite(both).all()
    assert (both - safe_only).abs().mean() > 1e-4
    assert (both - other_only).abs().mean() > 1e-4


def test_refuses_hgr_for_another_latent_space(comfy_nodes, tiny_model):
    hgr = identity_hgr(latent_channels=16)
    with pytest.raises(ValueError, match="16-channel latents.*model has 4"):
        _apply(comfy_nodes, tiny_model, hgr)


def test_refuses_hgr_for_another_prediction_type(comfy_nodes, tiny_model):
    hgr = identity_hgr()
    hgr.metadata["prediction_type"] = "flow"
    with pytest.raises(ValueError, match="flow-prediction models but the model is eps-prediction"):
        _apply(comfy_nodes, tiny_model, hgr)


def test_categories_input_selects_and_validates(comfy_nodes, tiny_model):
    hgr = redirecting_hgr()
    none_selected_is_plain = _apply(comfy_nodes, tiny_model, hgr, categories="nudity")
    assert torch.isfinite(_ksampler(comfy_nodes, none_selected_is_plain)).all()
    with pytest.raises(ValueError, match=r"categories: unknown \['weapons'\]"):
        _apply(comfy_nodes, tiny_model, hgr, categories="nudity, weapons")
    with pytest.raises(ValueError, match="start_percent"):
        _apply(comfy_nodes, tiny_model, hgr, start=0.8, end=0.2)


def test_passes_runs_the_hgr_again_on_the_redirected_guidance_each_step(comfy_nodes, tiny_model):
    hgr = redirecting_hgr()
    calls = _count_hgr_calls(hgr)
    once = _ksampler(comfy_nodes, _apply(comfy_nodes, tiny_model, hgr))
    one_pass_calls = len(calls)
    twice = _ksampler(comfy_nodes, run_node(comfy_nodes, "SafeCFGApply", model=tiny_model, hgr=hgr, strength=1.0,
                                            start_percent=0.0, end_percent=1.0, categories="all", passes=2)[0])
    assert len(calls) - one_pass_calls == 2 * one_pass_calls
    assert (twice - once).abs().mean().item() > 1e-4 and torch.isfinite(twice).all()
    plain = _ksampler(comfy_nodes, tiny_model)
    idle = run_node(comfy_nodes, "SafeCFGApply", model=tiny_model, hgr=identity_hgr(), strength=1.0, start_percent=0.0,
                    end_percent=1.0, categories="all", passes=4)[0]
    assert (_ksampler(comfy_nodes, idle) - plain).abs().max().item() < 1e-5
    from safecfg_comfy.patch import patch_model

    for bad in (0, 5):
        with pytest.raises(ValueError, match="passes must be between 1 and 4"):
            patch_model(tiny_model, hgr, passes=bad)
