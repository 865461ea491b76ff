"""train_hgr's export step (training.run.export) on the toy world: where the final evaluation runs."""

import argparse

import pytest
import torch

from training.jobs import Job


@pytest.fixture(scope="module")
def backend(comfy_nodes):
    from training.backends import ToyBackend

    return ToyBackend("cpu")


def _rows(jobs: int, steps: int = 4) -> dict:
    generator = torch.Generator().manual_seed(0)
    count = jobs * steps
    data = {k: torch.randn(count, 4, 8, 8, generator=generator) for k in ("g", "x", "uncond_denoised", "target_change")}
    data["sigma"] = torch.tensor([14.6, 3.0, 0.8, 0.1] * jobs)  # each trajectory from high to low noise
    data["job"] = torch.arange(jobs).repeat_interleave(steps)
    data["labels"] = torch.tensor([[1.0], [0.0]]).repeat(jobs // 2, 1)[data["job"]]
    return data


def test_the_final_evaluation_runs_on_the_runs_device_not_a_fixed_cpu(backend, tmp_path, monkeypatch):
    from hgr_core import HGR, HGRConfig, load_hgr
    from training import run

    jobs = [Job("a naked red circle", ("nudity",), "a red circle", "safe", False, 1, 7.0, "", "val", "euler", "normal", 4),
            Job("a blue square", (), None, "none", False, 2, 7.0, "", "val", "euler", "normal", 4)]
    seen = []

    def recording_evaluate(hgr, data, jobs, rows, categories, device, window):
        seen.append((device, next(hgr.parameters()).device))
        return evaluate(hgr, data, jobs, rows, categories, device, window)

    evaluate = run.evaluate
    monkeypatch.setattr(run, "evaluate", recording_evaluate)
    args = argparse.Namespace(output=tmp_path / "hgr.safetensors", threshold_percentile=99.0, steps=2,
                              multi_concept_target="sum")
    ema = HGR(HGRConfig(categories=("nudity",), base_channels=8, channel_mult=(1, 2)))
    # "cpu:0" is a CPU, spelt unlike the "cpu" the export used to hard-code: only a passed-on --device reaches it.
    run.export(args, ema, _rows(2), jobs, torch.arange(8), ("nudity",), backend, [], {}, "cpu:0")
    assert seen == [("cpu:0", torch.device("cpu"))]
    assert load_hgr(args.output).config.categories == ("nudity",)
