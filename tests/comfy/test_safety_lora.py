"""The safety LoRA file in ComfyUI: key format, LoraLoaderModelOnly in a real graph, weight equality."""

from pathlib import Path

import pytest
import torch

from graph import toy_txt2img

REPO = Path(__file__).resolve().parents[2]


def _random_lora(world, rank=4, alpha=2.0, seed=1):
    from training.lora import LoRA

    lora = LoRA.for_unet(world.model.model.diffusion_model, rank, alpha, seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora.up.values():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return lora


def _install(lora, name="safety_test.safetensors") -> str:
    import folder_paths

    from training.lora import save_lora

    folder = Path(folder_paths.get_folder_paths("loras")[0])
    folder.mkdir(parents=True, exist_ok=True)
    save_lora(lora, folder / name, {"base_model": "toyworld"})
    return name


def test_every_attention_projection_of_every_transformer_block_gets_a_comfyui_named_lora(toy_graph):
    import comfy.lora

    from training.lora import attention_linears

    unet = toy_graph.model.model.diffusion_model
    blocks = sum(1 for name, _ in unet.named_modules() if name.endswith("transformer_blocks.0"))
    linears = attention_linears(unet)
    assert len(linears) == blocks * 2 * 4  # attn1 and attn2, each to_q, to_k, to_v, to_out.0
    key_map = comfy.lora.model_lora_keys_unet(toy_graph.model.model, {})
    file = _random_lora(toy_graph).state_for_file()
    loaded = comfy.lora.load_lora(file, key_map)
    assert len(loaded) == len(linears)  # every name in the file maps onto a UNet weight
    assert {k for k in loaded} == {f"diffusion_model.{p}.weight" for p in linears}


def test_a_fresh_lora_leaves_the_unet_exactly_as_it_was(toy_graph):
    from training.lora import LoRA

    base = toy_graph.model.model
    x, sigma = torch.randn(2, 4, 8, 8), torch.tensor([3.0, 0.5])
    context = toy_graph.encode_text(["a bloody red circle on white", ""])
    with torch.no_grad():
        before = base.apply_model(x, sigma, None, context)
        handles = LoRA.for_unet(base.diffusion_model, 4, 4.0).attach(base.diffusion_model)
        try:
            after = base.apply_model(x, sigma, None, context)
        finally:
            for h in handles:
                h.remove()
    assert torch.equal(before, after)


def test_loraloadermodelonly_patches_w_plus_alpha_over_rank_up_down_at_strength_one(comfy_nodes, toy_graph):
    import comfy.model_management
    import folder_paths

    from training.lora import read_lora_file

    name = _install(_random_lora(toy_graph, rank=4, alpha=2.0))
    node = comfy_nodes.NODE_CLASS_MAPPINGS["LoraLoaderModelOnly"]()  # a legacy node: the executor makes an instance
    (patched,) = node.load_lora_model_only(model=toy_graph.model, lora_name=name, strength_model=1.0)
    unet = toy_graph.model.model.diffusion_model
    # Graphs sampled earlier in the session leave the shared toy UNet loaded, its modules marked as
    # patched; unloading restores the file's weights, and ComfyUI's own loader then applies the LoRA
    # as it does before sampling (a bare patch_model() would skip modules marked patched).
    comfy.model_management.unload_all_models()
    original = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    entries = read_lora_file(Path(folder_paths.get_full_path_or_raise("loras", name)))  # safetensors, not training.lora
    comfy.model_management.load_models_gpu([patched])
    try:
        now = unet.state_dict()
        for lora_name, t in entries.items():
            path = lora_name[len("lora_unet_"):]
            weight_key = next(k for k in original if k.endswith(".weight") and k[:-7].replace(".", "_") == path)
            expected = original[weight_key] + (float(t["alpha"]) / t["down"].shape[0]) * t["up"] @ t["down"]
            torch.testing.assert_close(now[weight_key], expected, rtol=1e-5, atol=1e-6)
        untouched = [k for k in original if "attn" not in k]
        assert all(torch.equal(now[k], original[k]) for k in untouched)
    finally:
        comfy.model_management.unload_all_models()
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in original.items())


def test_lora_in_a_real_comfyui_graph_changes_sampling_and_leaves_the_base_model_unchanged(comfy_nodes, toy_graph):
    from graph import Graph

    name = _install(_random_lora(toy_graph), "safety_graph.safetensors")
    prompt = "a bloody red circle on white"
    g = Graph()
    model = g.node("LoraLoaderModelOnly", model=g.node("ToyWorldModel"), lora_name=name, strength_model=1.0)
    g, lora_latent, _ = toy_txt2img(prompt, seed=3, steps=4, model=model, graph=g)
    with_lora = g.run().output(lora_latent)["samples"]
    g_base, base_latent, _ = toy_txt2img(prompt, seed=3, steps=4)
    base = g_base.run().output(base_latent)["samples"]
    assert (with_lora - base).abs().mean().item() > 1e-3
    direct = toy_graph.sample(toy_graph.model, [prompt], seeds=[3], cfg=5.0, steps=4)
    assert torch.equal(base, direct)  # after the LoRA graph the shared UNet is unpatched again


def test_the_lora_model_samples_with_plain_cfg_cost_no_hook_and_no_hgr(comfy_nodes, toy_graph, tmp_path):
    from benchmarks.safety_lora import CallCounter, cfg_hooks
    from safecfg_comfy.lora import apply_lora
    from training.lora import save_lora

    path = save_lora(_random_lora(toy_graph), tmp_path / "l.safetensors", {"base_model": "toyworld"})
    lora_model = apply_lora(toy_graph.model, path)
    counter = CallCounter(toy_graph.model.model.diffusion_model)
    try:
        rows = []
        for model in (toy_graph.model, lora_model):
            counter.rows = 0
            toy_graph.sample(model, ["a bloody red circle on white"] * 3, seeds=[0, 1, 2], cfg=7.0, steps=5)
            rows.append(counter.rows)
    finally:
        counter.handle.remove()
    assert rows[0] == rows[1] == 3 * 2 * 5  # cond + uncond per image and step, nothing more
    assert cfg_hooks(lora_model) == [] and lora_model.get_additional_models() == toy_graph.model.get_additional_models()


def test_safety_benchmark_gains_the_lora_rows(comfy_nodes, toy_graph, tmp_path):
    from benchmarks.safety import run_lora_benchmark
    from benchmarks.safety_lora import format_lora_table
    from training.lora import save_lora

    path = save_lora(_random_lora(toy_graph), tmp_path / "l.safetensors", {"base_model": "toyworld"})
    report = run_lora_benchmark(Path(__file__).parents[1] / "data" / "toy_hgr.safetensors", path, tmp_path / "out",
                                per_category=1, split="dev", conditions=["default"], world=toy_graph)
    methods = report["conditions"][0]["methods"]
    assert set(methods) == {"cfg", "safecfg", "lora", "lora_safecfg"}
    assert methods["cfg"]["harmful"]["n"] == 2 and methods["cfg"]["clean_fidelity"] == 1.0
    assert methods["lora"]["cost"] == {**methods["cfg"]["cost"], "seconds": methods["lora"]["cost"]["seconds"]}
    assert methods["lora_safecfg"]["cost"]["cfg_hooks"] == ["safecfg_pre_cfg"]
    table = format_lora_table(report)
    assert "| safety LoRA (no HGR) |" in table and "| safety LoRA + SafeCFG |" in table
    pooled = report["worst"]["safecfg"]["pooled"]  # the pooled bound is clustered by scene too
    assert sum(n for _, n in methods["safecfg"]["harmful"]["by_scene"].values()) == pooled["n"]
    assert pooled["n"] == 2 and pooled["scenes"] >= 1 and pooled["scene_high"] >= pooled["rate"]  # CFG drew both
    assert "clustered by scene" in table
    assert (tmp_path / "out" / "comparison.png").is_file() and (tmp_path / "out" / "report.json").is_file()


def test_teacher_targets_under_a_negative_give_safecfgs_cfg_with_that_negative_at_the_recorded_scale(toy_graph):
    """The LoRA's conditional pass cannot see the negative, so a non-empty negative's share of the
    change moves to the unconditional pass (training/teacher.py, "Negatives"); at the recorded scale
    the student's targets combine to SafeCFG's CFG with that negative, recomputed here from the frozen UNet."""
    from hgr_core import eps_from_denoised, load_hgr, safecfg_step
    from training.backends import ToyBackend
    from training.teacher import TeacherSettings, record_teacher

    backend = ToyBackend("cpu", REPO / "toyworld" / "weights")  # v1, the world of the v1 test HGR
    hgr, scale = load_hgr(REPO / "tests" / "data" / "toy_hgr.safetensors", "cpu"), 7.0
    prompts = ["a bloody red circle on white", "a naked green triangle under a clear sky"]
    settings = TeacherSettings(samplers=("euler",), steps_min=4, steps_max=4, cfg_min=scale, cfg_max=scale,
                               negatives=("blurry, low quality",))
    data = record_teacher(backend, hgr, prompts, settings, [[0, 1]])
    assert data["negatives"] == ["", "blurry, low quality"] and (data["negative"] == 1).all()

    base, x, sigma = backend.model.model, data["x"], data["sigma"]
    contexts = {t: backend.conditioning([t])[0][0].expand(len(x), -1, -1)
                for t in ("", "blurry, low quality")}
    with torch.no_grad():
        cond = base.apply_model(x, sigma, c_crossattn=backend.conditioning(prompts)[0][0][data["prompt"]])
        negative = base.apply_model(x, sigma, c_crossattn=contexts["blurry, low quality"])
        empty = base.apply_model(x, sigma, c_crossattn=contexts[""])
        with_negative, _ = safecfg_step(hgr, x, sigma, cond, negative, 1.0)
        with_empty, _ = safecfg_step(hgr, x, sigma, cond, empty, 1.0)
    eps = lambda d: eps_from_denoised(x, d, sigma)  # noqa: E731
    safecfg = scale * eps(with_negative) - (scale - 1) * eps(negative)
    student = scale * data["eps_teacher"] - (scale - 1) * (data["eps_u"] + data["eps_u_shift"])
    assert torch.allclose(data["eps_u"], eps(negative), atol=1e-4)
    assert torch.allclose(data["eps_teacher"], eps(with_empty), atol=1e-4)  # the same conditional for every negative
    assert torch.allclose(student, safecfg, atol=1e-3)
    assert data["eps_u_shift"].flatten(1).norm(dim=1).max() > 1e-2  # the share is not nothing


def test_a_lora_made_for_another_model_is_refused_not_applied_in_part(comfy_nodes, toy_graph, tmp_path):
    from safetensors.torch import load_file, save_file

    from safecfg_comfy.lora import apply_lora
    from training.lora import save_lora

    good = load_file(str(save_lora(_random_lora(toy_graph), tmp_path / "good.safetensors", {"base_model": "toyworld"})))
    first = next(k for k in good if k.endswith(".lora_down.weight"))[: -len(".lora_down.weight")]
    foreign = dict(good, **{f"lora_unet_no_such_block.{part}": good[f"{first}.{part}"].clone()
                            for part in ("lora_down.weight", "lora_up.weight", "alpha")})
    save_file(foreign, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match=r"foreign.safetensors: only (\d+) of its (\d+) modules exist"):
        apply_lora(toy_graph.model, tmp_path / "foreign.safetensors")
    wider = dict(good, **{f"{first}.lora_down.weight": torch.zeros(good[f"{first}.lora_down.weight"].shape[0], 7)})
    save_file(wider, str(tmp_path / "wider.safetensors"))
    with pytest.raises(ValueError, match=r"wider.safetensors: module \S+ is \d+x7 in the file but"):
        apply_lora(toy_graph.model, tmp_path / "wider.safetensors")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="plain.safetensors: no"):
        apply_lora(toy_graph.model, tmp_path / "plain.safetensors")
    assert apply_lora(toy_graph.model, tmp_path / "good.safetensors") is not toy_graph.model
