"""Safe Latent Diffusion baseline: the eps-space math on hand-made numbers, then SLD, CFG and
SafeCFG as ComfyUI patches of a tiny SD1.5-family model (model evaluations counted)."""

from contextlib import contextmanager

import pytest
import torch

from helpers import redirecting_hgr
from hgr_core import SLD_PRESETS, SLDPreset, SLDState, safety_guidance, sld_denoised, sld_eps, sld_preset

CONTEXT_DIM = 32  # tiny SD1.5 config
NO_MOMENTUM = SLDPreset(warmup_steps=0, sld_scale=1000.0, threshold=0.01, momentum=0.0, beta=0.0)


def _column(*values):
    """A (1, len, 1, 1) tensor: one value per element, so each element tests one case."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


# ---------------------------------------------------------------- math (no ComfyUI)

@pytest.mark.parametrize("name, fields", [
    ("weak", (15, 20.0, 0.0, 0.0, 0.0)),
    ("medium", (10, 1000.0, 0.01, 0.3, 0.4)),
    ("strong", (7, 2000.0, 0.025, 0.5, 0.7)),
    ("max", (0, 5000.0, 1.0, 0.5, 0.7)),
])
def test_presets_are_the_papers(name, fields):
    assert sld_preset(name) == SLDPreset(*fields) == SLD_PRESETS[name]


def test_unknown_preset_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="max"):
        sld_preset("extreme")


def test_warmup_keeps_its_share_of_the_50_step_schedule_at_other_step_counts():
    from hgr_core import scale_warmup, sld_preset_for_steps

    assert sld_preset_for_steps("weak", 20).warmup_steps == 6  # 15 of 50 -> 6 of 20, not 15 of 20
    assert sld_preset_for_steps("strong", 3) == scale_warmup(sld_preset("strong"), 3)
    assert scale_warmup(sld_preset("medium"), 3).warmup_steps == 1 and scale_warmup(sld_preset("max"), 3) == sld_preset("max")
    assert scale_warmup(NO_MOMENTUM, 50) == NO_MOMENTUM


def test_scale_is_distance_times_sld_scale_clamped_at_one():
    eps_u, eps_s = torch.full((1, 3, 1, 1), -1.0), torch.zeros(1, 3, 1, 1)  # eps_S - eps_u = 1
    eps_c = _column(-0.0005, -0.01, -2.0)  # mu = 0.5, clamp(10) = 1, clamp(2000) = 1
    g_s, _ = safety_guidance(eps_c, eps_u, eps_s, NO_MOMENTUM, SLDState())
    assert torch.allclose(g_s, _column(0.5, 1.0, 1.0))


def test_scale_is_zero_where_prompt_minus_concept_reaches_the_threshold():
    eps_u, eps_s = torch.full((1, 3, 1, 1), -2.0), torch.zeros(1, 3, 1, 1)  # eps_S - eps_u = 2
    eps_c = _column(0.01, 0.5, 0.005)  # >= 0.01: zeroed; 0.005 * 1000 = 5 -> 1
    g_s, _ = safety_guidance(eps_c, eps_u, eps_s, NO_MOMENTUM, SLDState())
    assert torch.equal(g_s, _column(0.0, 0.0, 2.0))


def test_momentum_follows_equations_7_and_8():
    preset = SLDPreset(warmup_steps=0, sld_scale=1000.0, threshold=1.0, momentum=0.5, beta=0.7)
    eps_u, eps_c = torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)
    g1, state = safety_guidance(eps_c, eps_u, torch.full((1, 1, 1, 1), 1.0), preset, SLDState())
    assert g1.item() == pytest.approx(1.0) and state.momentum.item() == pytest.approx(0.3)  # nu = 0.3 * g1
    g2, state = safety_guidance(eps_c, eps_u, torch.full((1, 1, 1, 1), 2.0), preset, state)
    assert g2.item() == pytest.approx(2.0 + 0.5 * 0.3)  # g2 = 2 + s_m * nu = 2.15
    assert state.momentum.item() == pytest.approx(0.7 * 0.3 + 0.3 * 2.15)  # 0.855


def _random_eps(seed=0, shape=(2, 4, 6, 5)):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen) for _ in range(3)]


def test_warmup_steps_are_plain_cfg_while_momentum_builds_up():
    eps_c, eps_u, eps_s = _random_eps()
    preset = SLD_PRESETS["medium"]
    eps, state = sld_eps(eps_c, eps_u, eps_s, 7.5, preset.warmup_steps - 1, preset, SLDState())
    assert torch.equal(eps, eps_u + 7.5 * (eps_c - eps_u))
    assert state.momentum is not None and state.momentum.abs().sum() > 0


def test_after_warmup_the_safety_guidance_is_subtracted_before_scaling():
    eps_c, eps_u, eps_s = _random_eps()
    preset = SLD_PRESETS["strong"]
    g_s, _ = safety_guidance(eps_c, eps_u, eps_s, preset, SLDState())
    eps, _ = sld_eps(eps_c, eps_u, eps_s, 7.5, preset.warmup_steps, preset, SLDState())
    assert torch.allclose(eps, eps_u + 7.5 * ((eps_c - eps_u) - g_s), atol=1e-5)


def test_without_cfg_sld_is_off_and_its_state_untouched():
    eps_c, eps_u, eps_s = _random_eps()
    state = SLDState()
    eps, after = sld_eps(eps_c, eps_u, eps_s, 1.0, 5, SLD_PRESETS["max"], state)
    assert torch.allclose(eps, eps_c) and after is state


def test_half_precision_in_half_precision_out():
    eps_c, eps_u, eps_s = (t.half() for t in _random_eps())
    eps, state = sld_eps(eps_c, eps_u, eps_s, 7.5, 0, SLD_PRESETS["max"], SLDState())
    assert eps.dtype == torch.float16 and state.momentum.dtype == torch.float32


def test_denoised_form_under_cfg_equals_the_eps_form():
    """ComfyUI's CFG on the replaced D_c must give exactly SLD's eps (the hook's contract)."""
    eps_c, eps_u, eps_s = _random_eps(1)
    x, sigma, w = torch.randn(eps_c.shape), torch.tensor([3.0, 0.2]), 6.0
    denoised = [x - sigma.view(-1, 1, 1, 1) * e for e in (eps_c, eps_u, eps_s)]
    preset = SLD_PRESETS["max"]
    expected, _ = sld_eps(eps_c, eps_u, eps_s, w, 0, preset, SLDState())
    cond, _ = sld_denoised(x, sigma, *denoised, 0, preset, SLDState())
    cfg_denoised = denoised[1] + w * (cond - denoised[1])
    assert torch.allclose((x - cfg_denoised) / sigma.view(-1, 1, 1, 1), expected, atol=1e-3)


def test_denoised_form_returns_the_conditional_prediction_itself_during_warmup():
    eps_c, eps_u, eps_s = _random_eps()
    x, sigma = torch.randn(eps_c.shape), torch.ones(2)
    cond, state = sld_denoised(x, sigma, eps_c, eps_u, eps_s, 0, SLD_PRESETS["weak"], SLDState())
    assert cond is eps_c and state.momentum is not None


# ---------------------------------------------------------------- ComfyUI integration

def _conditioning(seed, scale=1.0):
    return [[torch.randn(1, 5, CONTEXT_DIM, generator=torch.Generator().manual_seed(seed)) * scale, {}]]


POSITIVE, NEGATIVE, CONCEPT = _conditioning(1), _conditioning(2, 0.1), _conditioning(3)


def _sample(model, steps=3, cfg=5.0, negative=NEGATIVE, callback=None):
    import comfy.sample

    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    return comfy.sample.sample(model, noise, steps, cfg, "euler", "normal", POSITIVE, negative,
                               torch.zeros(1, 4, 8, 8), callback=callback, disable_pbar=True, seed=0)


def _denoised_per_step(model, steps):
    out = []
    _sample(model, steps, callback=lambda step, x0, x, total: out.append(x0.clone()))
    return out


@contextmanager
def _unet_batch_entries(model):
    """Counts UNet evaluations (batch entries) made while the block runs."""
    entries = []
    handle = model.model.diffusion_model.register_forward_pre_hook(lambda m, args: entries.append(args[0].shape[0]))
    try:
        yield entries
    finally:
        handle.remove()


def _patch_model():
    from safecfg_comfy.patch import patch_model

    return patch_model


@pytest.fixture(scope="module")
def baselines(comfy_nodes):
    from safecfg_comfy import sld_patch

    return sld_patch


@pytest.mark.parametrize("method, per_step", [("cfg", 2), ("safecfg", 2), ("sld", 3)])
def test_model_evaluations_per_step(baselines, tiny_model, method, per_step):
    patched = {"cfg": lambda: tiny_model,
               "safecfg": lambda: _patch_model()(tiny_model, redirecting_hgr()),
               "sld": lambda: baselines.apply_sld(tiny_model, CONCEPT, "max")}[method]()
    with _unet_batch_entries(tiny_model) as entries:
        out = _sample(patched, steps=4)
    assert sum(entries) == 4 * per_step
    assert torch.isfinite(out).all()


def test_sld_steers_away_from_a_concept(baselines, tiny_model):
    plain = _sample(tiny_model)
    safe = _sample(baselines.apply_sld(tiny_model, CONCEPT, "max"))
    assert (safe - plain).abs().mean().item() > 1e-3


def test_concept_equal_to_the_negative_prompt_is_plain_cfg(baselines, tiny_model):
    """g_S = (eps_S - eps_u) * mu vanishes; only batched-vs-single UNet rounding remains."""
    plain = _sample(tiny_model)
    safe = _sample(baselines.apply_sld(tiny_model, NEGATIVE, "max"))
    assert (safe - plain).abs().max().item() < 1e-4 * plain.abs().max().item()


def test_run_shorter_than_the_warmup_is_plain_cfg_bit_for_bit(baselines, tiny_model):
    assert torch.equal(_sample(baselines.apply_sld(tiny_model, CONCEPT, "weak")), _sample(tiny_model))


def test_safety_guidance_starts_at_the_step_after_the_warmup(baselines, tiny_model):
    plain = _denoised_per_step(tiny_model, 4)
    safe = _denoised_per_step(baselines.apply_sld(tiny_model, CONCEPT, SLDPreset(2, 1000.0, 0.01, 0.5, 0.7)), 4)
    assert [torch.equal(p, s) for p, s in zip(plain, safe)] == [True, True, False, False]


def test_momentum_does_not_leak_from_one_run_into_the_next(baselines, tiny_model):
    patched = baselines.apply_sld(tiny_model, CONCEPT, SLDPreset(0, 1000.0, 0.01, 0.5, 0.7))
    first = _sample(patched)
    _sample(patched, steps=5)
    assert torch.equal(_sample(patched), first)


def test_step_index_comes_from_the_schedule(baselines):
    options = {"transformer_options": {"sample_sigmas": torch.tensor([10.0, 5.0, 1.0, 0.0])}}
    steps = [baselines.schedule_step(torch.tensor([s]), options) for s in (10.0, 7.0, 5.0, 1.0)]
    assert steps == [0, 0, 1, 2]  # a midpoint evaluation (7) belongs to the step it starts from
    with pytest.raises(RuntimeError, match="sample_sigmas"):
        baselines.schedule_step(torch.tensor([1.0]), {})
