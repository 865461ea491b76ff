"""`python -m training.finetune_safe` on the toy world and on a random-weight SD1.5: tiny runs, real code paths."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
HGR = REPO / "tests" / "data" / "toy_hgr.safetensors"
TOY = ["--toy", "--toy-weights", str(REPO / "toyworld" / "weights")]  # toy world v1, the one HGR was trained on
POOL = [("a bloody red circle on white", "violence"), ("a blue square on black", ""),
        ("a naked green triangle under a clear sky", "nudity"), ("a yellow diamond on grey", "")]
TINY = ["--score-steps", "3", "--steps-range", "3,3", "--samplers", "euler", "--steps", "2", "--batch-size", "4",
        "--warmup", "1", "--eval-every", "2", "--rounds", "1"]  # the two-round default: its own tests below


def _pool(path: Path, rows) -> Path:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["prompt", "category"])
        out.writerows(rows)
    return path


def _run(*args, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "training.finetune_safe", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(done.stderr[-3000:])
    return done


def _toy(tmp_path, name, pool, *extra, check=True):
    work = tmp_path / name
    return _run(*TOY, "--hgr", str(HGR), "--pool", str(pool), "--output", str(work / "lora.safetensors"),
                "--work-dir", str(work), *TINY, *extra, check=check), work


def test_toy_run_writes_a_lora_with_provenance_and_pseudo_labels_that_ignore_a_lying_label_column(tmp_path):
    _, honest = _toy(tmp_path, "honest", _pool(tmp_path / "pool.csv", POOL))
    lying_rows = [(p, "" if c else "violence") for p, c in POOL]  # every label flipped
    _, lying = _toy(tmp_path, "lying", _pool(tmp_path / "lying.csv", lying_rows))

    labels = json.loads((honest / "pseudo_labels.json").read_text())
    assert labels["prompts"] == 4 and labels["flagged"] == 2 and labels["clean"] == 2
    assert labels["per_category"] == {"nudity": 1, "violence": 1}
    assert labels["hidden_truth"]["precision"] == 1.0 and labels["hidden_truth"]["recall"] == 1.0
    flipped = json.loads((lying / "pseudo_labels.json").read_text())
    assert flipped["prompts_scored"] == labels["prompts_scored"]  # same scores, weights, categories
    assert flipped["hidden_truth"]["precision"] == 0.0  # only the report reads the column
    a, b = load_file(honest / "lora.safetensors"), load_file(lying / "lora.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (honest / "score_histogram.png").stat().st_size > 1000

    with safe_open(str(honest / "lora.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["base_model"] == "toyworld" and json.loads(meta["hgr"])["file"] == HGR.name
    assert json.loads(meta["pseudo_labels"])["per_category"] == {"nudity": 1, "violence": 1}
    ups = [v for k, v in a.items() if k.endswith("lora_up.weight")]
    assert len(ups) == 56 and max(float(u.abs().max()) for u in ups) > 0  # trained away from the zero init


def test_resume_continues_from_the_checkpoint_and_reuses_the_teacher_cache(tmp_path):
    pool = _pool(tmp_path / "pool.csv", POOL)
    _toy(tmp_path, "run", pool)
    done, work = _toy(tmp_path, "run", pool, "--resume", "--steps", "4")
    assert "resumed from" in done.stderr and "at step 2" in done.stderr
    assert "teacher trajectories from" in done.stderr
    assert torch.load(work / "lora_checkpoint.pt", weights_only=True)["step"] == 4
    refused, _ = _toy(tmp_path, "run", pool, "--resume", "--steps", "6", "--rank", "2", check=False)
    assert refused.returncode == 2 and "--resume" in refused.stderr and "--work-dir" in refused.stderr


def test_a_second_round_trains_on_the_students_own_rollouts_and_resumes_from_its_checkpoint(tmp_path):
    from training.teacher import FIELDS

    pool = _pool(tmp_path / "pool.csv", POOL)
    first, work = _toy(tmp_path, "run", pool, "--rounds", "2")
    assert "round 2 student rollouts:" in first.stderr
    rollouts = torch.load(next(work.glob("rollouts_*.pt")), weights_only=True)
    assert set(FIELDS) <= rollouts.keys() and sorted(set(rollouts["prompt"].tolist())) == [0, 1, 2, 3]  # clean ones too
    assert len(rollouts["sigma"]) == 4 * 3  # 4 prompts x 3 euler steps, one batch
    assert torch.load(next(work.glob("lora_checkpoint_round2_*.pt")), weights_only=True)["step"] == 2
    trained = load_file(work / "lora.safetensors")
    again, _ = _toy(tmp_path, "run", pool, "--rounds", "2", "--resume")
    assert "round 2 student rollouts from" in again.stderr and again.stderr.count("resumed from") == 2
    resumed = load_file(work / "lora.safetensors")
    assert all(torch.equal(trained[k], resumed[k]) for k in trained)  # both rounds complete: the same LoRA
    longer, _ = _toy(tmp_path, "run", pool, "--rounds", "2", "--resume", "--steps", "3")  # round 1 changes: round 2 starts afresh
    assert longer.stderr.count("resumed from") == 1 and len(list(work.glob("lora_checkpoint_round2_*.pt"))) == 2


def test_refusals_name_the_flag_or_file(tmp_path):
    pool = _pool(tmp_path / "pool.csv", POOL)
    missing_pool, _ = _toy(tmp_path, "a", tmp_path / "nope.csv", check=False)
    assert missing_pool.returncode == 2 and "nope.csv: file not found" in missing_pool.stderr
    missing_hgr = _run(*TOY, "--hgr", str(tmp_path / "no_hgr.safetensors"), "--pool", str(pool),
                       "--output", str(tmp_path / "x.safetensors"), check=False)
    assert missing_hgr.returncode == 2 and "--hgr" in missing_hgr.stderr and "no_hgr.safetensors" in missing_hgr.stderr
    bad_output = _run(*TOY, "--hgr", str(HGR), "--pool", str(pool), "--output", str(tmp_path / "x.pt"), check=False)
    assert bad_output.returncode == 2 and "--output" in bad_output.stderr and ".safetensors" in bad_output.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    no_prompts, _ = _toy(tmp_path, "b", empty, check=False)
    assert no_prompts.returncode == 2 and "empty.txt: no prompts found" in no_prompts.stderr


def test_sd15_smoke_run_writes_a_lora_that_comfyui_loads(tmp_path, random_sd15_checkpoint):
    from hgr_core import save_hgr
    from helpers import redirecting_hgr

    hgr_path = tmp_path / "sd15_hgr.safetensors"
    save_hgr(redirecting_hgr(), hgr_path, base_model="SD15", threshold=0.05)
    pool = tmp_path / "pool.txt"
    pool.write_text("a photo of a cat\na bloody knife\n")
    out = tmp_path / "sd15_lora.safetensors"
    _run("--checkpoint", str(random_sd15_checkpoint), "--resolution", "64", "--hgr", str(hgr_path), "--pool", str(pool),
         "--output", str(out), "--work-dir", str(tmp_path / "work"), "--score-steps", "2", "--steps-range", "2,2",
         "--samplers", "euler", "--steps", "2", "--batch-size", "2", "--warmup", "1", "--eval-every", "2")
    loaded = subprocess.run([sys.executable, "-c", LOAD_IN_COMFYUI, str(random_sd15_checkpoint), str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split()[-2:] == ["128", "128"]  # 16 transformer blocks x 2 attentions x 4 projections, all mapped


LOAD_IN_COMFYUI = """
import sys
sys.path.append('.')
from safecfg_comfy.locate import setup_comfyui
setup_comfyui(cpu=True)
import comfy.lora, comfy.sd, comfy.utils
model = comfy.sd.load_checkpoint_guess_config(sys.argv[1], output_vae=False, output_clip=False)[0]
lora = comfy.utils.load_torch_file(sys.argv[2], safe_load=True)
loaded = comfy.lora.load_lora(lora, comfy.lora.model_lora_keys_unet(model.model, {}))
patched, _ = comfy.sd.load_lora_for_models(model, None, lora, 1.0, 0)
print(len([k for k in lora if k.endswith('lora_down.weight')]), len(loaded))
"""


def test_torchrun_two_processes_share_the_sampling_train_with_ddp_and_rank_zero_writes_the_lora(tmp_path):
    pool = _pool(tmp_path / "pool.csv", POOL)
    out = tmp_path / "ddp.safetensors"
    batches = ["--trajectory-batch", "2", "--rounds", "2"]  # rollouts: 2 batches, one per rank; teacher: 1 batch, rank 1 has none
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                           "training.finetune_safe", *TOY, "--hgr", str(HGR), "--pool", str(pool), "--output", str(out),
                           "--work-dir", str(tmp_path / "work"), *TINY, *batches, "--steps", "4"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    work = tmp_path / "work"
    # DDP (no find_unused_parameters) raises on a later step if a LoRA gradient was not reduced.
    assert torch.load(work / "lora_checkpoint.pt", weights_only=True)["step"] == 4
    assert len([k for k in load_file(out) if k.endswith("lora_up.weight")]) == 56
    assert not list(work.glob("*.part*"))  # the ranks' parts were merged
    rollouts = torch.load(next(work.glob("rollouts_*.pt")), weights_only=True)
    assert sorted(set(rollouts["prompt"].tolist())) == [0, 1, 2, 3]  # both ranks' batches
    # The merged teacher cache (rank 0 scored and sampled everything there was) is the single process's, bit for bit.
    _, single = _toy(tmp_path, "single", pool, *batches, "--steps", "4")
    ddp_rows, single_rows = (torch.load(next(w.glob("teacher_*.pt")), weights_only=True) for w in (work, single))
    assert ddp_rows.keys() == single_rows.keys()
    assert all(torch.equal(ddp_rows[k], single_rows[k]) for k in ddp_rows if k != "negatives")
    assert json.loads((work / "pseudo_labels.json").read_text())["flagged"] == 2
