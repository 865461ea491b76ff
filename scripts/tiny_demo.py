"""Interim demo: SafeCFGApply on a tiny random SD1.5-family model inside the real ComfyUI.

It shows the mechanics only (identity HGR == CFG, a redirecting HGR changes the sample); the
toy-world demo with a trained HGR and a picture grid replaces it.
"""

import asyncio
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))
from find_comfyui import setup_comfyui  # noqa: E402

log = logging.getLogger("tiny_demo")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    setup_comfyui(cpu=True)
    import torch
    import nodes as comfy_nodes

    from benchmarks.random_models import sd15_model
    from hgr_core import HGR, HGRConfig

    asyncio.run(comfy_nodes.load_custom_node(str(REPO)))
    apply = comfy_nodes.NODE_CLASS_MAPPINGS["SafeCFGApply"]
    model = sd15_model()
    gen = torch.Generator().manual_seed(0)
    positive = [[torch.randn(1, 5, 32, generator=gen), {}]]
    negative = [[torch.zeros(1, 5, 32), {}]]

    def sample(m):
        latent = {"samples": torch.zeros(1, 4, 8, 8)}
        return comfy_nodes.common_ksampler(m, 7, 10, 6.0, "euler", "normal", positive, negative, latent)[0]["samples"]

    identity = HGR(HGRConfig(base_channels=16)).eval()
    redirecting = HGR(HGRConfig(base_channels=16)).eval()
    torch.nn.init.normal_(redirecting.head.weight, std=0.05)
    plain = sample(model)
    for name, hgr in (("identity HGR", identity), ("random redirecting HGR", redirecting)):
        hgr.metadata = {"prediction_type": "eps"}
        patched = apply.execute(model, hgr, 1.0, 0.0, 1.0, "all").result[0]
        log.info("%-24s max |SafeCFG - CFG| = %.2e", name, (sample(patched) - plain).abs().max().item())


if __name__ == "__main__":
    main()
