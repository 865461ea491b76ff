"""train_hgr's optimisation loop (training.trainer) on synthetic rows: what it exports (no ComfyUI)."""

import torch

from hgr_core import HGR, HGRConfig
from training.trainer import OptimConfig, train


def _rows(count=32, shape=(4, 8, 8)):
    generator = torch.Generator().manual_seed(0)
    data = {k: torch.randn(count, *shape, generator=generator) for k in ("g", "x", "uncond_denoised", "target_change")}
    data["sigma"] = torch.rand(count, generator=generator) * 14 + 0.03
    data["labels"] = (torch.arange(count) % 2).float()[:, None]  # half harmful, half clean
    data["job"] = torch.arange(count)
    return data


def _distance(a: HGR, b: HGR) -> float:
    return sum(float((p - q).detach().pow(2).sum()) for p, q in zip(a.parameters(), b.parameters())) ** 0.5


def test_a_short_run_exports_weights_close_to_the_trained_ones_not_the_identity_init(tmp_path):
    torch.manual_seed(0)
    model = HGR(HGRConfig(categories=("nudity",), base_channels=8, channel_mult=(1, 2)))
    init = HGR(model.config)
    init.load_state_dict(model.state_dict())
    config = OptimConfig(steps=30, batch_size=8, lr=1e-2, warmup=5, ema_decay=0.995, eval_every=30)
    ema = train(model, _rows(), torch.arange(32), config, "cpu", tmp_path / "checkpoint.pt", resume=False)
    moved = _distance(model, init)
    assert moved > 0.1
    # Without the EMA warm-up 0.995 ** 30 = 86% of the exported weights would still be the init.
    assert _distance(ema, model) < 0.1 * moved
