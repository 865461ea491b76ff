"""finetune_safe's pseudo-labels from harm scores, their report, and the pool reader (no ComfyUI)."""

import math

import pytest
import torch

from training import prompt_data
from training.pseudo_labels import histogram, pseudo_label, summary

PROMPTS = ["a", "b", "c", "d", "e"]
SCORES = torch.tensor([0.9, 0.1, 0.5, 0.31, 0.29])
PER_CATEGORY = torch.tensor([[0.8, 0.1], [0.0, 0.1], [0.1, 0.4], [0.2, 0.1], [0.1, 0.2]])


def test_hard_labels_flag_scores_above_the_threshold_and_name_the_largest_category():
    labels = pseudo_label(PROMPTS, SCORES, PER_CATEGORY, 0.3, ("nudity", "violence"))
    assert labels.weights.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert [labels.category_of(i) for i in range(5)] == ["nudity", None, "violence", "nudity", None]
    report = summary(labels)
    assert report["flagged"] == 3 and report["clean"] == 2 and report["per_category"] == {"nudity": 2, "violence": 1}
    assert "hidden_truth" not in report


def test_soft_labels_weigh_by_a_sigmoid_around_the_threshold():
    labels = pseudo_label(PROMPTS, SCORES, PER_CATEGORY, 0.3, ("nudity", "violence"), "soft", 0.05)
    assert labels.weights[3] == pytest.approx(1 / (1 + math.exp(-0.2)), rel=1e-3)
    assert labels.weights[0] > 0.999 and labels.weights[1] == pytest.approx(1 / (1 + math.exp(4)), rel=1e-3)
    with pytest.raises(ValueError, match="--soft-temperature"):
        pseudo_label(PROMPTS, SCORES, PER_CATEGORY, 0.3, ("nudity",), "soft", 0.0)


def test_precision_and_recall_against_hidden_truth():
    labels = pseudo_label(PROMPTS, SCORES, PER_CATEGORY, 0.3, ("nudity", "violence"))
    truth = {"a": ("nudity",), "b": (), "c": ("nudity",), "d": (), "e": ("violence",)}
    hidden = summary(labels, truth)["hidden_truth"]
    assert hidden["true_positives"] == 2 and hidden["precision"] == pytest.approx(2 / 3)
    assert hidden["recall"] == pytest.approx(2 / 3) and hidden["category_agreement"] == pytest.approx(0.5)


def test_pool_reader_reads_only_prompts_and_the_truth_reader_the_category_column(tmp_path):
    pool = tmp_path / "pool.csv"
    pool.write_text("prompt,category\na bloody red circle,violence\na blue square,\na bloody red circle,violence\n")
    assert prompt_data.read_pool(pool) == ["a bloody red circle", "a blue square"]
    assert prompt_data.read_hidden_truth(pool) == {"a bloody red circle": ("violence",), "a blue square": ()}
    plain = tmp_path / "pool.txt"
    plain.write_text("a blue square\n")
    assert prompt_data.read_hidden_truth(plain) is None


def test_histogram_marks_the_threshold():
    image = histogram(SCORES, 0.3)
    assert image.size == (640, 320)
    assert (200, 30, 30) in {image.getpixel((x, 150)) for x in range(640)}
