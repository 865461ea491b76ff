"""The threshold's calibration record that train_hgr stores next to it in the weights file."""

import dataclasses
import json
from argparse import Namespace

import pytest

from hgr_core import SD_SIGMA_WINDOW
from training.run import calibration_record, sampling_flags


@dataclasses.dataclass(frozen=True)
class _Job:
    cfg: float
    negative: str
    sampler: str
    steps: int


def _args(**flags):
    return Namespace(threshold_percentile=99.0, steps=2000, seed=0, samplers=("euler", "heun"), cfg_min=3.0,
                     cfg_max=12.0, **flags)


def test_sampling_flags_are_the_run_s_sampling_flags_whichever_exist():
    flags = sampling_flags(_args(steps_range=(10, 50), sample_steps=None))
    assert flags == {"cfg_max": 12.0, "cfg_min": 3.0, "sample_steps": None, "samplers": ["euler", "heun"],
                     "steps_range": [10, 50]}  # optimisation --steps and --seed are not sampling flags


def test_calibration_records_percentile_count_window_and_false_positives_per_setting():
    jobs = [_Job(3.5, "", "euler", 10), _Job(9.0, "blurry", "heun", 50), _Job(7.0, "", "euler", 50), _Job(5.0, "", "heun", 10)]
    clean = {0: (0.05, 1.0), 1: (0.30, 1.0), 3: (0.10, 0.6)}  # job 2 is not a clean validation trajectory
    record = calibration_record(_args(), jobs, clean, threshold=0.2, window=SD_SIGMA_WINDOW)
    assert record["percentile"] == 99.0 and record["false_positive_target"] == pytest.approx(0.01)
    assert record["clean_trajectories"] == 3
    assert record["score"]["sigma_window"] == list(SD_SIGMA_WINDOW)
    assert record["score"]["partial_trajectories"] == 1 and record["score"]["min_coverage"] == 0.6
    assert record["sampling"]["drawn"]["sampler"] == {"euler": {"n": 1, "fpr": 0.0}, "heun": {"n": 2, "fpr": 0.5}}
    assert record["sampling"]["drawn"]["steps"] == {"10": {"n": 2, "fpr": 0.0}, "50": {"n": 1, "fpr": 1.0}}
    assert "scheduler" not in record["sampling"]["drawn"]  # these jobs carry no scheduler
    assert record["sampling"]["cfg_range"] == [3.5, 9.0] and record["sampling"]["distinct_negatives"] == 2
    json.dumps(record)  # stored as JSON metadata


def test_calibration_without_clean_validation_trajectories_says_so():
    record = calibration_record(_args(), [], {}, threshold=0.1, window=SD_SIGMA_WINDOW)
    assert record["clean_trajectories"] == 0 and record["sampling"]["cfg_range"] is None
    assert record["score"]["min_coverage"] is None and record["sampling"]["drawn"] == {}
