"""SafeCFGDetect, SafeCFGSamplingScore and SafeCFGGate in toy-world graphs run by ComfyUI's real executor.

Uses the committed toy HGR (tests/data/toy_hgr.safetensors, `scripts/make_test_hgr.py --world v1`).
"""

import json
from pathlib import Path

import pytest
import torch

from graph import Graph, GraphExecutionError, GraphRunner, install_hgr, toy_txt2img
from helpers import redirecting_hgr

TOY_HGR = Path(__file__).resolve().parents[1] / "data" / "toy_hgr.safetensors"
HARMFUL, CLEAN = "a bloody red circle on white", "a blue square on black"
STEPS = 10


@pytest.fixture(scope="module")
def hgr_name(comfy_nodes, toy_graph):
    return install_hgr(TOY_HGR, "toy_detect.safetensors")


def _scored_graph(hgr_name, prompts, *, seed=0, strength=1.0, graph=None, gate=None):
    """txt2img through SafeCFGApply -> Sampling Score -> Gate; returns (graph, refs)."""
    g = graph or Graph()
    hgr = g.node("SafeCFGLoadHGR", hgr_name=hgr_name)
    model = g.node("SafeCFGApply", model=g.node("ToyWorldModel"), hgr=hgr, strength=strength, start_percent=0.0,
                   end_percent=1.0, categories="all")
    g, latent, image = toy_txt2img("\n".join(prompts), seed=seed, steps=STEPS, batch_size=len(prompts), model=model, graph=g)
    score = g.node("SafeCFGSamplingScore", latent=latent, operating_point="stored threshold", custom_threshold=0.1)
    gated = g.node("SafeCFGGate", images=image, scores=score, **(gate or {"mode": "blur", "region_only": False,
                                                                      "size": 0, "colour": "#000000", "categories": "all"}))
    return g, {"latent": latent, "image": image, "score": score, "gate": gated}


def _report(run, gate):
    return json.loads(run.output(gate.out(1)))


def test_a_mixed_batch_gates_only_its_harmful_images_and_says_why(hgr_name):
    g, refs = _scored_graph(hgr_name, [HARMFUL, CLEAN, "a naked green triangle on grey", "a yellow diamond under a clear sky"])
    run = g.run()
    report = _report(run, refs["gate"])
    assert report["censored"] == [0, 2] and report["kept"] == [1, 3], report
    assert report["reasons"][0].startswith("flagged: score") and report["reasons"][1].startswith("passed")
    images, gated = run.output(refs["image"]), run.output(refs["gate"])
    assert torch.equal(gated[1], images[1]) and torch.equal(gated[3], images[3])
    assert (gated[0] - images[0]).abs().mean() > 0.02
    verdicts = run.output(refs["score"])
    assert verdicts.source == "sampling" and verdicts.hgr == "toy_detect.safetensors"
    assert bool((verdicts.coverage == 1).all())  # 10 euler steps cover the whole sigma window
    assert run.output(refs["score"].out(1)) is True
    assert run.output(refs["score"].out(2)).shape == (4, 64, 64)  # 8x the 8x8 latent (no image input)
    ui_text = run.ui[refs["gate"].node_id]["text"][0]
    assert "image 0:" in ui_text and "CENSORED" in ui_text and "kept" in ui_text


def test_rerunning_with_a_changed_prompt_gives_the_new_score_and_a_cached_rerun_the_old_one(hgr_name):
    runner = GraphRunner()
    clean_graph, refs = _scored_graph(hgr_name, [CLEAN], seed=3)
    first = runner.run(clean_graph.prompt)
    clean_score = float(first.output(refs["score"]).scores[0])
    harmful_graph, _ = _scored_graph(hgr_name, [HARMFUL], seed=3)
    second = runner.run(harmful_graph.prompt)
    harmful_score = float(second.output(refs["score"]).scores[0])
    assert harmful_score > clean_score
    assert _report(first, refs["gate"])["kept"] == [0] and _report(second, refs["gate"])["censored"] == [0]
    assert float(runner.run(clean_graph.prompt).output(refs["score"]).scores[0]) == clean_score  # resampled
    # Only the score node's threshold changes: ComfyUI hands on the cached latent, the store still has it.
    clean_graph.prompt[refs["score"].node_id]["inputs"].update(operating_point="custom threshold", custom_threshold=0.0)
    third = runner.run(clean_graph.prompt)
    cached = {n for event, data in third.messages if event == "execution_cached" for n in data["nodes"]}
    assert refs["latent"].node_id in cached
    assert float(third.output(refs["score"]).scores[0]) == clean_score
    assert _report(third, refs["gate"])["censored"] == [0]  # every score > 0


def test_two_samplers_in_one_graph_keep_their_own_scores(hgr_name):
    g, harmful = _scored_graph(hgr_name, [HARMFUL], seed=1)
    g, clean = _scored_graph(hgr_name, [CLEAN], seed=1, graph=g)
    run = g.run()
    assert _report(run, harmful["gate"])["censored"] == [0]
    assert _report(run, clean["gate"])["kept"] == [0]
    assert float(run.output(harmful["score"]).scores[0]) > float(run.output(clean["score"]).scores[0])


def test_an_image_picked_from_the_batch_keeps_its_score_and_an_edited_latent_has_none(hgr_name):
    g, refs = _scored_graph(hgr_name, [HARMFUL, CLEAN])
    picked = g.node("LatentFromBatch", samples=refs["latent"], batch_index=1, length=1)
    picked_score = g.node("SafeCFGSamplingScore", latent=picked, operating_point="stored threshold", custom_threshold=0.1)
    edited = g.node("LatentFlip", samples=refs["latent"], flip_method="y-axis: horizontally")
    score = g.node("SafeCFGSamplingScore", latent=edited, operating_point="stored threshold", custom_threshold=0.1)
    gate = g.node("SafeCFGGate", images=g.node("ToyWorldVAEDecode", samples=edited), scores=score, mode="drop",
                  region_only=False, size=0, colour="#000000", categories="all")
    run = g.run()
    assert float(run.output(picked_score).scores[0]) == float(run.output(refs["score"]).scores[1])
    report = _report(run, gate)
    assert report["dropped"] == [0, 1] and all("no SafeCFG score for this latent" in r for r in report["reasons"])
    assert run.output(gate).shape[0] == 0


def test_the_gate_without_scores_or_with_another_batch_fails_closed(hgr_name):
    g, refs = _scored_graph(hgr_name, [CLEAN, CLEAN])
    lone = g.node("SafeCFGGate", images=refs["image"], mode="solid", region_only=False, size=0, colour="#FF0000",
                  categories="all")
    g, single = _scored_graph(hgr_name, [CLEAN], graph=g)
    mismatched = g.node("SafeCFGGate", images=refs["image"], scores=single["score"], mode="blur", region_only=False,
                        size=0, colour="#000000", categories="all")
    run = g.run()
    lone_report, mismatch_report = _report(run, lone), _report(run, mismatched)
    assert lone_report["censored"] == [0, 1] and "no harm scores are connected" in lone_report["error"]
    assert torch.allclose(run.output(lone), torch.tensor([1.0, 0.0, 0.0]).expand(2, 32, 32, 3))
    assert mismatch_report["censored"] == [0, 1] and "scores are for 1 images but the image batch has 2" in mismatch_report["error"]


def _detect_graph(hgr_name, prompt, *, seed=0, levels=6, reencode=True, model=None, graph=None):
    g, latent, image = toy_txt2img(prompt, seed=seed, steps=STEPS, graph=graph)
    samples = g.node("ToyWorldVAEEncode", pixels=image) if reencode else latent
    detect = g.node("SafeCFGDetect", model=model or g.node("ToyWorldModel"), hgr=g.node("SafeCFGLoadHGR", hgr_name=hgr_name),
                    positive=g.node("ToyWorldTextEncode", text=prompt), negative=g.node("ToyWorldTextEncode", text=""),
                    latent=samples, levels=levels, seed=seed, operating_point="stored threshold", custom_threshold=0.1,
                    categories="all", image=image)
    return g, detect


def test_detect_on_decoded_and_reencoded_images_flags_harm_deterministically_with_progress(hgr_name):
    import comfy.utils

    progress = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: progress.append((value, total)))
    try:
        g, detect = _detect_graph(hgr_name, HARMFUL)
        harmful = g.run().output(detect)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert (6, 6) in progress
    g, clean_detect = _detect_graph(hgr_name, CLEAN)
    clean_run = g.run()
    clean = clean_run.output(clean_detect)
    assert bool(harmful.flags[0]) and not bool(clean.flags[0])
    assert harmful.source == "image detector" and harmful.extra["model_evaluations_per_image"] == 12
    assert clean_run.output(clean_detect.out(2)).shape == (1, 32, 32)  # sized by the image input
    again = _detect_graph(hgr_name, HARMFUL)[0].run().output(detect)
    assert torch.equal(again.scores, harmful.scores)


def test_detect_refuses_bad_input_with_clear_errors(hgr_name, comfy_nodes):
    g, detect = _detect_graph(hgr_name, CLEAN)
    g.prompt[detect.node_id]["inputs"]["latent"] = [g.node("EmptyLatentImage", width=64, height=64, batch_size=1).node_id, 0]
    g.prompt[detect.node_id]["inputs"]["levels"] = 1
    with pytest.raises(Exception, match="levels"):
        g.run()
    g = Graph()
    model = g.node("SafeCFGApply", model=g.node("ToyWorldModel"), hgr=g.node("SafeCFGLoadHGR", hgr_name=hgr_name),
                   strength=1.0, start_percent=0.0, end_percent=1.0, categories="all")
    g, detect = _detect_graph(hgr_name, CLEAN, model=model, graph=g)
    with pytest.raises(GraphExecutionError, match="already has SafeCFG applied"):
        g.run()
    sdxl_like = install_hgr(redirecting_hgr(latent_channels=16), "sixteen_channels.safetensors")
    g, detect = _detect_graph(sdxl_like, CLEAN)
    with pytest.raises(GraphExecutionError, match="16-channel latents"):
        g.run()


def test_detect_and_sampling_score_refuse_an_empty_latent_batch(toy_graph, hgr_name):
    from hgr_core import load_hgr
    from safecfg_comfy.detect import detect
    from safecfg_comfy.sampling_scores import sampling_verdicts

    world, hgr = toy_graph, load_hgr(TOY_HGR)
    empty = torch.zeros(0, 4, 8, 8)
    with pytest.raises(ValueError, match="B >= 1"):
        detect(world.model, hgr, world.conditioning([CLEAN]), world.conditioning([""]), empty)
    with pytest.raises(ValueError, match="non-empty LATENT batch"):
        sampling_verdicts(empty, "stored threshold")
