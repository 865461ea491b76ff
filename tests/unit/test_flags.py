"""Argument types shared by the command-line tools (training/flags.py)."""

from __future__ import annotations

import argparse

import pytest

from training.flags import int_range, unit_interval_list


def test_unit_interval_list_reads_levels_and_refuses_values_outside_zero_one():
    assert unit_interval_list("0.3,0.5,1") == (0.3, 0.5, 1.0)
    for bad in ("0,0.5", "0.3,1.5", "-0.1", "0.3,x", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            unit_interval_list(bad)


def test_int_range_needs_two_ordered_positive_values():
    assert int_range("10,50") == (10, 50)
    for bad in ("50,10", "0,5", "1,2,3", "a,b"):
        with pytest.raises(argparse.ArgumentTypeError):
            int_range(bad)


def test_every_cli_threads_flag_takes_a_positive_count_and_start_cli_applies_it():
    import torch

    from training.flags import add_threads_flag, start_cli

    parser = argparse.ArgumentParser()
    add_threads_flag(parser)
    assert parser.parse_args([]).threads is None and parser.parse_args(["--threads", "1"]).threads == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["--threads", "0"])
    before = torch.get_num_threads()
    try:
        start_cli(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_every_benchmark_cli_takes_the_same_passes_flag():
    from benchmarks import attacks, safety_cli, transfer
    from hgr_core import MAX_PASSES

    for cli, required in ((safety_cli, []), (attacks, ["--hgr", "h.safetensors"]), (transfer, [])):
        parser = cli.build_parser()
        assert parser.parse_args(required).passes == 1
        assert parser.parse_args([*required, "--passes", str(MAX_PASSES)]).passes == MAX_PASSES
        for bad in ("0", str(MAX_PASSES + 1), "two"):
            with pytest.raises(SystemExit):
                parser.parse_args([*required, "--passes", bad])
        assert "SafeCFGApply's 'passes'" in " ".join(parser.format_help().split())
