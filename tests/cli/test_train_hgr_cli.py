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
    text = _run("--help").stdout
    assert "(default: 20)" in text and "--trajectory-batch" in text and "--resume" in text


@pytest.mark.parametrize("args, message", [
    (["--toy", "--harmful", "h.csv", "--clean", "c.txt", "--output", "x.pt"], "must end in .safetensors"),
    (["--toy", "--harmful", "h.csv", "--clean", "c.txt", "--output", "x.safetensors", "--steps", "0"], "must be >= 1"),
    (["--toy", "--harmful", "h.csv", "--clean", "c.txt", "--output", "x.safetensors", "--channel-mult", "a,b"],
     "comma-separated integers"),
    (["--harmful", "h.csv", "--clean", "c.txt", "--output", "x.safetensors"], "one of the arguments --checkpoint --toy is required"),
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


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "h.csv").write_text("prompt,category\nx,nudity\n")
    (tmp_path / "c.txt").write_text("a cat\n")
    result = _run("--checkpoint", str(tmp_path / "nope.safetensors"), "--harmful", str(tmp_path / "h.csv"),
                  "--clean", str(tmp_path / "c.txt"), "--output", str(tmp_path / "x.safetensors"))
    assert result.returncode == 2
    assert "--checkpoint" in result.stderr and "nope.safetensors: file not found" in result.stderr
