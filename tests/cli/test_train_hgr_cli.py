"""train_hgr's command line: documented flags, one-line errors for bad flags and files."""

import subprocess
import sys

import pytest

from helpers import REPO


def _run(*args):
    return subprocess.run([sys.executable, "-m", "training.train_hgr", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_help_documents_every_flag_with_defaults():
    from training.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if action.dest != "help":
            assert action.help, f"{action.option_strings} has no help"
    text = " ".join(_run("--help").stdout.split())  # argparse wraps help lines
    assert "--trajectory-batch" in text and "--resume" in text and "--record-steps" in text
    assert "(default: normal,karras,simple,sgm_uniform)" in text and "(default: 10,50)" in text
    assert "(default: 3.0)" in text and "(default: 12.0)" in text


def test_single_value_flags_fix_one_part_of_the_sampling_mix():
    from training.cli import build_parser, sampling_from_args
    from training.jobs import DEFAULT_SAMPLERS

    base = ["--toy", "--harmful", "h.csv", "--clean", "c.txt", "--output", "x.safetensors"]
    mix = sampling_from_args(build_parser().parse_args(base))
    assert mix.samplers == DEFAULT_SAMPLERS and (mix.steps_min, mix.steps_max) == (10, 50) and mix.record_steps is None
    fixed = sampling_from_args(build_parser().parse_args(
        [*base, "--sampler", "heun", "--scheduler", "karras", "--sample-steps", "12", "--record-steps", "5"]))
    assert (fixed.samplers, fixed.schedulers, fixed.steps_min, fixed.steps_max) == (("heun",), ("karras",), 12, 12)
    assert fixed.record_steps == 5
    chosen = sampling_from_args(build_parser().parse_args([*base, "--samplers", "euler, ddim", "--steps-range", "8,16"]))
    assert chosen.samplers == ("euler", "ddim") and (chosen.steps_min, chosen.steps_max) == (8, 16)


@pytest.mark.parametrize("args, message", [
    (["--toy", "--harmful", "h.csv", "--clean", "c.txt", "--output", "x.pt"], "must end in .safetensors"),
    (["--toy", "--harmful", "h.csv", "--clean", "c.txt", "--output", "x.safetensors", "--steps", "0"], "must be >= 1"),
    (["--toy", "--harmful", "h.csv", "--clean", "c.txt", "--output", "x.safetensors", "--channel-mult", "a,b"],
     "comma-separated integers"),
    (["--harmful", "h.csv", "--clean", "c.txt", "--output", "x.safetensors"], "one of the arguments --checkpoint --toy is required"),
    (["--toy", "--harmful", "h.csv", "--clean", "c.txt", "--output", "x.safetensors", "--sampler", "euler",
      "--samplers", "euler,heun"], "not allowed with argument"),
    (["--toy", "--harmful", "h.csv", "--clean", "c.txt", "--output", "x.safetensors", "--steps-range", "50,10"],
     "expected MIN,MAX with 1 <= MIN <= MAX"),
])
def test_bad_flags_give_one_line_errors(args, message):
    result = _run(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_bad_prompt_file_names_file_and_line(tmp_path):
    (tmp_path / "h.csv").write_text("prompt,category\n,nudity\n")
    (tmp_path / "c.txt").write_text("a cat\n")
    result = _run("--toy", "--harmful", str(tmp_path / "h.csv"), "--clean", str(tmp_path / "c.txt"),
                  "--output", str(tmp_path / "x.safetensors"))
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "h.csv:2: empty or missing prompt" in last
    assert "Traceback" not in result.stderr


def test_unknown_sampler_is_a_one_line_error_naming_the_known_ones(tmp_path):
    (tmp_path / "h.csv").write_text("prompt,category,safe_prompt\na naked red circle,nudity,a red circle\n")
    (tmp_path / "c.txt").write_text("a blue square\n")
    result = _run("--toy", "--harmful", str(tmp_path / "h.csv"), "--clean", str(tmp_path / "c.txt"),
                  "--samplers", "euler,dpmpp_2m_karras", "--output", str(tmp_path / "x.safetensors"),
                  "--work-dir", str(tmp_path / "work"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "unknown sampler ['dpmpp_2m_karras']" in last and "dpmpp_2m_sde" in last
    assert not (tmp_path / "work" / "trajectories").exists()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "h.csv").write_text("prompt,category\nx,nudity\n")
    (tmp_path / "c.txt").write_text("a cat\n")
    result = _run("--checkpoint", str(tmp_path / "nope.safetensors"), "--harmful", str(tmp_path / "h.csv"),
                  "--clean", str(tmp_path / "c.txt"), "--output", str(tmp_path / "x.safetensors"))
    assert result.returncode == 2
    assert "--checkpoint" in result.stderr and "nope.safetensors: file not found" in result.stderr
