"""What SafeCFG costs per sampling step next to plain CFG and Safe Latent Diffusion.

Builds ComfyUI's full-size SD1.5 UNet with random weights (no download) and samples a 64x64
latent (512x512 image), batch 1, through ComfyUI's own sampler with plain CFG, SafeCFG
(`safecfg_comfy.patch.patch_model`, what the SafeCFGApply node installs, with the default
`HGRConfig()` and a random non-identity output layer) and SLD (`safecfg_comfy.sld_patch.apply_sld`,
medium preset, a third evaluation of a random 77x768 safety concept). The three methods
alternate within every repetition (rotating who goes first), so a machine shared with other jobs
slows all of them alike; per-step times are medians over all timed steps. On a shared CPU a single
step still varies by +-10%, more than SafeCFG's expected ~1%, so the report also predicts each
ratio from parts: the CFG step plus one HGR forward (timed five times per UNet forward), and the
CFG step plus one batch-1 UNet forward (SLD's third evaluation).

Also reported: HGR parameter count, weights size on disk, load time; one HGR forward against one
UNet forward (batch 1) at 64x64 and at SDXL's 128x128 latent. A full SDXL UNet forward does not fit
a CPU time budget (the SD1.5 UNet alone takes 1-2 min at 128x128 on 2 cores, and SDXL's has twice
its FLOPs), so at 128x128 the SD1.5 UNet is timed as a lower bound and FLOPs are counted for
SD1.5, SDXL and the HGR (on the meta device: exact, no memory, no time).

    python -m benchmarks.overhead      # 8 repetitions: ~9 min on 2 idle cores with --skip-sdxl, ~10 without
    python -m benchmarks.overhead --tiny --steps 1 --repeats 1 --warmup 0 --out /tmp/o.json  # smoke
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hgr_core import atomic_write_json
from safecfg_comfy.locate import setup_comfyui

log = logging.getLogger("benchmarks.overhead")

CFG_SCALE = 7.5
SAMPLER, SCHEDULER = "euler", "normal"
SLD_PRESET = "medium"
CONTEXT = (77, 768)  # SD1.5 text conditioning: tokens x CLIP width
# The SDXL base UNet as ComfyUI's model_detection describes it (only used on the meta device).
SDXL_UNET = {
    "model_channels": 320, "in_channels": 4, "out_channels": 4, "channel_mult": [1, 2, 4],
    "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "transformer_depth_middle": 10,
    "context_dim": 2048, "num_head_channels": 64, "use_linear_in_transformer": True,
    "use_spatial_transformer": True, "legacy": False, "num_classes": "sequential",
    "adm_in_channels": 2816, "use_temporal_attention": False, "use_temporal_resblock": False,
    "image_size": 32,
}
TARGETS = {"safecfg_ratio_max": 1.03, "sld_ratio_about": 1.5, "weights_mb_max": 20.0, "load_seconds_max": 0.5}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1, help="timed sampling steps per method per repetition")
    parser.add_argument("--repeats", type=int, default=8,
                        help="timed repetitions (each runs every method once; also UNet forwards at 64x64)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions of one step per method first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("output/benchmarks/overhead.json"), help="JSON report path")
    parser.add_argument("--skip-sdxl", action="store_true",
                        help="skip the SDXL-size (128x128 latent) forward comparison")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights, conditioning and noise")
    parser.add_argument("--tiny", action="store_true", help="smoke test: the 1M-parameter UNet (meaningless numbers)")
    args = parser.parse_args(argv)
    if min(args.steps, args.repeats, args.threads) < 1 or args.warmup < 0:
        parser.error(f"--steps, --repeats, --threads must be >= 1 and --warmup >= 0, got {vars(args)}")
    return args


def random_hgr(seed: int):
    """Default-config HGR whose output layer is random, so it redirects (and costs) like a trained one."""
    from hgr_core import HGR, HGRConfig

    torch.manual_seed(seed)
    hgr = HGR(HGRConfig())
    with torch.no_grad():
        hgr.head.weight.normal_(0, 0.02)
    return hgr.eval().requires_grad_(False)


def conditioning(generator: torch.Generator, shape: tuple[int, int] = CONTEXT) -> list:
    """A random text conditioning (tokens x width) in ComfyUI's CONDITIONING format."""
    return [[torch.randn(1, *shape, generator=generator), {}]]


def now() -> float:
    """A timestamp after all queued GPU work (plain perf_counter on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def time_sampling(model, inputs: dict, steps: int, seed: int) -> list[float]:
    """Seconds per sampling step, from ComfyUI's per-step callback (the first includes setup)."""
    import comfy.sample

    marks = [now()]
    comfy.sample.sample(
        model, inputs["noise"], steps, CFG_SCALE, SAMPLER, SCHEDULER, inputs["positive"], inputs["negative"],
        inputs["latent"], callback=lambda *_: marks.append(now()), disable_pbar=True, seed=seed,
    )
    return [b - a for a, b in zip(marks, marks[1:])]


def time_methods(methods: dict, inputs: dict, args) -> dict[str, list[float]]:
    """Alternate the methods within each repetition; returns all timed per-step seconds by method."""
    names, times = list(methods), {name: [] for name in methods}
    for rep in range(args.warmup + args.repeats):
        timed = rep >= args.warmup
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            steps = time_sampling(methods[name], inputs, args.steps if timed else 1, args.seed)
            log.info("%s %-8s %s s/step", "rep" if timed else "warm-up", name, " ".join(f"{t:.2f}" for t in steps))
            if timed:
                times[name] += steps
    return times


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = now()
        fn()
        out.append(now() - start)
    return out


def unet_forward(model, size: int, generator: torch.Generator):
    """One batch-1 UNet evaluation at a size x size latent, as the sampler makes it."""
    device = model.load_device
    x = torch.randn(1, 4, size, size, generator=generator).to(device)
    context_dim = model.model.model_config.unet_config["context_dim"]
    context = torch.randn(1, CONTEXT[0], context_dim, generator=generator).to(device)
    return lambda: model.model.apply_model(x, torch.full((1,), 5.0, device=device), c_crossattn=context)


def hgr_forward(hgr, size: int, generator: torch.Generator):
    device = next(hgr.parameters()).device
    g, x, u = (torch.randn(1, 4, size, size, generator=generator).to(device) for _ in range(3))
    return lambda: hgr(g, torch.full((1,), 5.0, device=device), x, u)


def compare_forwards(model, hgr, size: int, repeats: int, generator) -> dict:
    """Median seconds of one UNet and one HGR forward at one size, interleaved (5 HGR per UNet)."""
    unet, net = unet_forward(model, size, generator), hgr_forward(hgr, size, generator)
    net()  # the first call allocates
    unet_s, hgr_s = [], []
    for _ in range(repeats):
        unet_s += timed(unet, 1)
        hgr_s += timed(net, 5)
    result = {"latent": [size, size], "unet_seconds": statistics.median(unet_s), "unet_samples": unet_s,
              "hgr_seconds": statistics.median(hgr_s), "hgr_samples": hgr_s}
    result["hgr_over_unet"] = result["hgr_seconds"] / result["unet_seconds"]
    return result


def gflops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def unet_gflops(family: str, unet_config: dict, size: int) -> float:
    """FLOPs of one batch-1 forward of a ComfyUI UNet built on the meta device (no memory, no time)."""
    import comfy.supported_models

    config = getattr(comfy.supported_models, family)(dict(unet_config))
    config.set_inference_dtype(torch.float32, None)
    with torch.device("meta"):
        model = config.get_model({}, device="meta")
        x, sigma = torch.zeros(1, 4, size, size), torch.full((1,), 5.0)
        context = torch.zeros(1, 77, unet_config["context_dim"])
        extra = {"y": torch.zeros(1, unet_config["adm_in_channels"])} if unet_config.get("adm_in_channels") else {}
        return gflops(lambda: model.apply_model(x, sigma, c_crossattn=context, **extra))


def hgr_file_stats(hgr, repeats: int = 7) -> dict:
    """Weights size on disk and median load time of the exported .safetensors."""
    from hgr_core import load_hgr, parameter_count, save_hgr

    with tempfile.TemporaryDirectory() as tmp:
        path = save_hgr(hgr, Path(tmp) / "hgr.safetensors")
        loads = timed(lambda: load_hgr(path), repeats)
        size = path.stat().st_size
        return {"parameters": parameter_count(hgr), "weights_bytes": size, "weights_mb": size / 1e6,
                "load_seconds": statistics.median(loads), "load_samples": loads}


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "load_average_start": os.getloadavg()}


def sampling_report(times: dict[str, list[float]]) -> dict:
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    return {"per_step_seconds": medians, "per_step_samples": times,
            "ratio": {name: medians[name] / medians["cfg"] for name in medians}}


def log_table(report: dict) -> None:
    s = report["sampling"]
    rows = [("method", "median s/step (range)", "x CFG", "x CFG from parts")]
    for name in ("cfg", "safecfg", "sld"):
        samples = s["per_step_samples"][name]
        rows.append((name, f"{s['per_step_seconds'][name]:.2f} ({min(samples):.1f}-{max(samples):.1f})",
                     f"{s['ratio'][name]:.3f}", f"{s['expected_ratio'][name]:.3f}"))
    h = report["hgr"]
    rows.append(("HGR params", f"{h['parameters']:,}", "", ""))
    rows.append(("HGR weights", f"{h['weights_mb']:.1f} MB", "", ""))
    rows.append(("HGR load", f"{h['load_seconds'] * 1000:.0f} ms", "", ""))
    for key, label in (("forward_64", "64x64"), ("forward_128", "128x128 (SD1.5 UNet)")):
        f = report.get(key)
        if f:
            rows.append((f"fwd {label}", f"UNet {f['unet_seconds']:.2f} s", f"HGR {f['hgr_seconds']:.3f} s",
                         f"HGR/UNet {f['hgr_over_unet']:.4f} (FLOPs {f['hgr_over_unet_flops']:.4f})"))
    if report.get("forward_128"):
        f = report["forward_128"]
        rows.append(("fwd 128x128 SDXL", f"{f['sdxl_unet_gflops']:.0f} GFLOP", f"HGR {f['hgr_gflops']:.0f} GFLOP",
                     f"HGR/SDXL FLOPs {f['hgr_over_sdxl_flops']:.4f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        log.info("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def forward_section(model, hgr, size: int, repeats: int, args, generator, sdxl: bool = False) -> dict:
    """One UNet vs one HGR forward at a size x size latent, timed and in FLOPs (SDXL FLOPs too if asked)."""
    from benchmarks.random_models import SD15_UNET, TINY_SD15_UNET

    result = compare_forwards(model, hgr, size, repeats, generator)
    result["unet_gflops"] = unet_gflops("SD15", TINY_SD15_UNET if args.tiny else SD15_UNET, size)
    result["hgr_gflops"] = gflops(hgr_forward(hgr, size, generator))
    result["hgr_over_unet_flops"] = result["hgr_gflops"] / result["unet_gflops"]
    if sdxl:
        result["unet"] = "SD1.5 UNet at 128x128: a lower bound of an SDXL UNet forward (see sdxl_unet_gflops)"
        result["sdxl_unet_gflops"] = unet_gflops("SDXL", SDXL_UNET, size)
        result["hgr_over_sdxl_flops"] = result["hgr_gflops"] / result["sdxl_unet_gflops"]
    log.info("forward %dx%d: UNet %.2f s, HGR %.3f s", size, size, result["unet_seconds"], result["hgr_seconds"])
    return result


def build(args):
    """The SD1.5 ComfyUI model with random weights and a redirecting default-config HGR."""
    from benchmarks.random_models import SD15_UNET, TINY_SD15_UNET, sd15_model

    start = time.perf_counter()
    model = sd15_model(TINY_SD15_UNET if args.tiny else SD15_UNET, seed=args.seed)
    log.info("built the UNet in %.0f s", time.perf_counter() - start)
    return model, random_hgr(args.seed)


def measure(model, hgr, args, report: dict) -> None:
    """Sampling per step for the three methods, then single forwards at 64x64 and 128x128."""
    import comfy.model_management

    from safecfg_comfy.patch import patch_model as apply_safecfg
    from safecfg_comfy.sld_patch import apply_sld

    context = (CONTEXT[0], model.model.model_config.unet_config["context_dim"])
    generator = torch.Generator().manual_seed(args.seed)
    inputs = {"positive": conditioning(generator, context), "negative": conditioning(generator, context),
              "latent": torch.zeros(1, 4, 64, 64), "noise": torch.randn(1, 4, 64, 64, generator=generator)}
    methods = {"cfg": model, "safecfg": apply_safecfg(model, hgr),
               "sld": apply_sld(model, conditioning(generator, context), SLD_PRESET)}
    with torch.inference_mode():
        report["sampling"] = sampling_report(time_methods(methods, inputs, args))
        comfy.model_management.load_models_gpu([model])  # the forwards below bypass the sampler's loading
        hgr.to(model.load_device)
        report["forward_64"] = forward_section(model, hgr, 64, args.repeats, args, generator)
        if not args.skip_sdxl:  # one UNet forward: it is a stated lower bound, and FLOPs back it up
            report["forward_128"] = forward_section(model, hgr, 128, 1, args, generator, sdxl=True)
    report["sampling"]["expected_ratio"] = expected_ratios(report)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    setup_comfyui()
    from hgr_core import parameter_count

    start = time.perf_counter()
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(["python -m benchmarks.overhead", *sys.argv[1:]]),
              "settings": {**{k: str(v) for k, v in vars(args).items()}, "latent": [1, 4, 64, 64], "cfg": CFG_SCALE,
                           "sampler": SAMPLER, "scheduler": SCHEDULER, "sld_preset": SLD_PRESET},
              "machine": machine(), "targets": TARGETS}
    model, hgr = build(args)
    report["unet_parameters"] = parameter_count(model.model.diffusion_model)
    report["hgr"] = hgr_file_stats(hgr)
    measure(model, hgr, args, report)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["wall_seconds"] = time.perf_counter() - start
    write_report(report, args.out)
    log_table(report)
    ratio = report["sampling"]["ratio"]
    print(f"overhead_ratio_safecfg={ratio['safecfg']:.3f} overhead_ratio_sld={ratio['sld']:.3f}", flush=True)
    return report


def expected_ratios(report: dict) -> dict:
    """Per-step ratios predicted from the parts (one CFG step + an HGR forward, + a UNet forward).

    Less noisy than the end-to-end ratios on a shared CPU, and a check on them."""
    cfg = report["sampling"]["per_step_seconds"]["cfg"]
    f = report["forward_64"]
    return {"cfg": 1.0, "safecfg": (cfg + f["hgr_seconds"]) / cfg, "sld": (cfg + f["unet_seconds"]) / cfg}


def write_report(report: dict, path: Path) -> None:
    atomic_write_json(path, report)  # creates the folder too
    log.info("wrote %s (%.0f s in all)", path, report["wall_seconds"])


if __name__ == "__main__":
    main()
