"""Peak memory of training from the trajectory store: N against 4N trajectories (issue 16).

Writes N and 4N synthetic trajectories of `--latent` latents (`--steps` recorded steps each) with
the store's own writer (`training.store.write_shard`, `write_manifest`), then, in a fresh process
each, opens the store as `benchmarks.trivial_baselines` does but lazily (`read_cache` with
`preload_bytes=0`, the path of caches over `store.PRELOAD_BYTES`: verified shards, jobs,
labels, train split) and draws `--batches` training batches through the training loop's data path
(`trainer.batch_rows`, `trainer.batch_at`); `--train` also runs `trainer.train` on a tiny HGR (the
optimiser's memory does not depend on N; it is slow on a CPU). Reports each process's peak RSS
(`ru_maxrss`), their ratio, and the store's bytes per recorded step (shard files / rows). Sampling
real trajectories with SD1.5 on a CPU would take days; the values do not change what is read.
Float32 rows held in memory, as train_hgr did before the store, would make the ratio about
(base + 4 S) / (base + S) for a store of S bytes in float32.

    python -m benchmarks.trajectory_memory                           # N=200 x 10 steps of 4x64x64, ~1 min
    python -m benchmarks.trajectory_memory --trajectories 40 --batches 100

Last line: ``peak_rss_ratio=... bytes_per_step=...``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hgr_core import atomic_write_json
from training import store
from training.jobs import Job, Shard

MIB = 2**20


def synthetic_jobs(count: int) -> list[Job]:
    """Alternating harmful and clean trajectories, every tenth held out for validation."""
    return [Job(f"synthetic {i}", ("nudity",) if i % 2 else (), "a safe scene" if i % 2 else None,
                "safe" if i % 2 else "none", False, i, 7.0, "", "val" if i % 10 == 0 else "train",
                "euler", "normal", 0) for i in range(count)]


def write_synthetic(folder: Path, trajectories: int, steps: int, latent: tuple[int, ...], per_shard: int = 16) -> int:
    """A complete store of random rows (`steps` per trajectory); returns the bytes of its shard files."""
    shards = [Shard(tuple(range(start, min(start + per_shard, trajectories))), "euler", "normal", steps)
              for start in range(0, trajectories, per_shard)]
    gen = torch.Generator().manual_seed(0)
    sigmas = torch.logspace(1.2, -1.5, steps)  # high to low noise, as a trajectory records them
    for index, shard in enumerate(shards):
        count = len(shard.jobs) * steps
        rows = {name: torch.randn(count, *latent, generator=gen) for name in store.HALF_FIELDS}
        rows["sigma"] = sigmas.repeat(len(shard.jobs))
        rows["job"] = torch.tensor(shard.jobs).repeat_interleave(steps)
        store.write_shard(folder, index, rows)
    store.write_manifest(folder, synthetic_jobs(trajectories), shards, f"synthetic-{trajectories}")
    return sum(p.stat().st_size for p in folder.glob("shard_*.safetensors"))


def peak_rss() -> int:
    """This process's peak resident set in bytes (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss() -> int | None:
    """This process's resident set now in bytes (Linux's /proc; None elsewhere)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), None)


def measure(folder: Path, batches: int, batch_size: int, train: bool) -> dict:
    """Open the store and draw `batches` batches (and train on them with `train`); peak RSS before and after."""
    from training.run import add_labels, rows_of_split
    from training.trainer import OptimConfig, batch_at, batch_rows

    data, jobs = store.read_cache(folder, preload_bytes=0)  # the lazy path: what real-scale caches use
    data = add_labels(data, jobs, ("nudity",))
    rows = rows_of_split(data, jobs, "train")
    opened = peak_rss()
    generator, total = torch.Generator().manual_seed(0), 0.0
    for _ in range(batches):
        total += float(batch_at(data, batch_rows(rows, batch_size, generator), "cpu")["g"].sum())
    if train:
        from hgr_core import HGR, HGRConfig
        from training.trainer import train as train_hgr

        model = HGR(HGRConfig(latent_channels=data["g"].shape[1], categories=("nudity",), base_channels=8,
                              channel_mult=(1,), blocks_per_level=1))
        config = OptimConfig(steps=batches, batch_size=batch_size, warmup=0, eval_every=batches)
        with tempfile.TemporaryDirectory() as tmp:
            train_hgr(model, data, rows, config, "cpu", Path(tmp) / "checkpoint.pt", False)
    return {"rows": data.rows, "peak_rss_after_open": opened, "peak_rss": peak_rss(), "rss_at_end": current_rss(),
            "checksum": total}


def measure_in_subprocess(folder: Path, args) -> dict:
    command = [sys.executable, "-m", "benchmarks.trajectory_memory", "--measure", str(folder),
               "--batches", str(args.batches), "--batch-size", str(args.batch_size), *(["--train"] if args.train else [])]
    result = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"measuring {folder.name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    latent = tuple(args.latent)
    sizes = {"N": args.trajectories, "4N": 4 * args.trajectories}
    report = {"latent": list(latent), "recorded_steps_per_trajectory": args.steps, "batches": args.batches,
              "batch_size": args.batch_size, "train": args.train, "tensor_bytes_per_step": store.bytes_per_row(latent)}
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        for name, count in sizes.items():
            folder = Path(scratch) / name
            folder.mkdir()
            shard_bytes = write_synthetic(folder, count, args.steps, latent)
            result = measure_in_subprocess(folder, args)
            report[name] = {"trajectories": count, "store_bytes": shard_bytes, **result}
    report["peak_rss_ratio"] = round(report["4N"]["peak_rss"] / report["N"]["peak_rss"], 4)
    report["bytes_per_step"] = round(report["4N"]["store_bytes"] / report["4N"]["rows"])
    return report


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.trajectory_memory", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--trajectories", type=_positive, default=200, help="N: trajectories of the smaller store")
    p.add_argument("--steps", type=_positive, default=10, help="recorded steps per trajectory")
    p.add_argument("--latent", type=_positive, nargs=3, default=[4, 64, 64], metavar=("C", "H", "W"), help="latent shape")
    p.add_argument("--batches", type=_positive, default=300, help="training batches drawn from each store")
    p.add_argument("--batch-size", type=_positive, default=64, help="rows per batch")
    p.add_argument("--train", action="store_true", help="also optimise a tiny HGR on the batches (slow on a CPU)")
    p.add_argument("--scratch", type=Path, default=None, help="folder for the temporary stores (default: the system's temp)")
    p.add_argument("--out", type=Path, default=Path("output/benchmarks/trajectory_memory.json"), help="JSON report")
    p.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)  # the child process's store
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)  # reading is I/O; one thread keeps both measurements alike
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.batches, args.batch_size, args.train)), flush=True)
        return
    report = run(args)
    atomic_write_json(args.out, report)
    for name in ("N", "4N"):
        r = report[name]
        print(f"{name}={r['trajectories']} trajectories, {r['rows']} recorded steps, store {r['store_bytes'] / MIB:.1f} MiB: "
              f"peak RSS {r['peak_rss'] / MIB:.1f} MiB ({r['peak_rss_after_open'] / MIB:.1f} MiB after opening, "
              f"{(r['rss_at_end'] or 0) / MIB:.1f} MiB resident at the end)")
    print(f"peak_rss_ratio={report['peak_rss_ratio']} bytes_per_step={report['bytes_per_step']}", flush=True)


if __name__ == "__main__":
    main()
