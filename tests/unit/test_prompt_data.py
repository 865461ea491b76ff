"""Prompt files for train_hgr: formats as published, and one-line errors naming file and line."""

import json

import pytest

from training.prompt_data import (PromptFileError, category_counts, check_concepts, read_clean, read_concepts,
                                  read_harmful, read_rows)


def test_i2p_style_csv_loads_as_it_is(tmp_path):
    path = tmp_path / "i2p.csv"
    path.write_text('prompt,categories,hard,nudity_percentage\n"nude woman, oil painting","sexual, shocking",1,80.0\n'
                    "knife fight in an alley,violence,0,0\n")
    prompts = read_harmful(path)
    assert prompts[0].categories == ("nudity", "violence")
    assert prompts[1].categories == ("violence",) and prompts[1].safe_text is None
    assert category_counts(prompts) == {"nudity": 1, "violence": 2}


def test_paired_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "paired.tsv"
    tsv.write_text("prompt\tcategory\tsafe_prompt\na bloody knife\tviolence\ta clean knife\n")
    jsonl = tmp_path / "paired.jsonl"
    jsonl.write_text(json.dumps({"prompt": "naked man", "category": "nudity", "safe_prompt": "man in a suit"}) + "\n")
    assert read_harmful(tsv)[0].safe_text == "a clean knife"
    assert read_harmful(jsonl)[0].categories == ("nudity",)


def test_txt_harmful_needs_a_category(tmp_path):
    path = tmp_path / "harm.txt"
    path.write_text("a gory scene\n")
    with pytest.raises(PromptFileError, match=r"harm.txt:1: no category"):
        read_harmful(path)
    assert read_harmful(path, default_category="gore")[0].categories == ("gore",)


def test_clean_prompts_from_lines_or_prompt_column(tmp_path):
    txt = tmp_path / "clean.txt"
    txt.write_text("a cat\n\na dog\n")
    csv_path = tmp_path / "coco.csv"
    csv_path.write_text("case_number,prompt,evaluation_seed\n1,a bus,42\n")
    assert read_clean(txt) == ["a cat", "a dog"]
    assert read_clean(csv_path) == ["a bus"]


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", "", "empty.txt: no prompts found"),
    ("nocol.csv", "text,category\nx,nudity\n", r"nocol.csv:1: no 'prompt' column"),
    ("blank.csv", "prompt,category\n,nudity\n", r"blank.csv:2: empty or missing prompt"),
    ("bad.jsonl", '{"prompt": "a"}\n{oops\n', r"bad.jsonl:2: not valid JSON"),
    ("data.parquet", "x", "unknown prompt file type"),
])
def test_malformed_files_name_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PromptFileError, match=message):
        read_clean(path) if name.endswith(".txt") else read_harmful(path)


def test_missing_file(tmp_path):
    with pytest.raises(PromptFileError, match="nothere.csv: file not found"):
        read_harmful(tmp_path / "nothere.csv")


def test_concepts_defaults_overrides_and_missing(tmp_path):
    path = tmp_path / "concepts.json"
    path.write_text('{"weapons": "guns, knives", "Sexual": "nsfw"}')
    concepts = read_concepts(path)
    assert concepts["weapons"] == "guns, knives" and concepts["nudity"] == "nsfw"
    assert "violence" in read_concepts(None)
    harmful = read_harmful(_write(tmp_path / "h.csv", "prompt,category\nx,unicorns\n"))
    with pytest.raises(PromptFileError, match=r"no concept text for categories \['unicorns'\]"):
        check_concepts(harmful, concepts, "--harmful")


def _write(path, text):
    path.write_text(text)
    return path


# Characters str.splitlines() treats as line ends; Ring-A-Bell's attack prompts hold U+2028.
LINE_LIKE = "\u2028\u2029\x0b\x0c\x1c\x1d\x1e\x85"


def test_line_separator_characters_stay_inside_csv_txt_and_jsonl_prompts(tmp_path):
    soup = f"gun {LINE_LIKE}bleeds bloody"
    csv_path = _write(tmp_path / "attack.csv", f'prompt,category\n"{soup}",violence\nchainsaw,violence\n')
    txt_path = _write(tmp_path / "attack.txt", f"{soup}\r\nchainsaw\n")
    jsonl_path = _write(tmp_path / "attack.jsonl", "".join(json.dumps({"prompt": p, "category": "violence"},
                                                                      ensure_ascii=False) + "\n"
                                                           for p in (soup, "chainsaw")))
    for path in (csv_path, txt_path, jsonl_path):
        assert [p.text for p in read_harmful(path, "violence")] == [soup, "chainsaw"], path.name


def test_read_rows_numbers_lines_and_keeps_tables_without_a_prompt_column(tmp_path):
    """Ring-A-Bell's Nudity_prompt.csv has no prompt column: the benchmark joins its parts itself."""
    path = _write(tmp_path / "Nudity_prompt.csv", 'nudity,people\n"bare\nskin",woman\nnude,man\n')
    assert read_rows(path) == [(3, {"nudity": "bare\nskin", "people": "woman"}), (4, {"nudity": "nude", "people": "man"})]
    assert read_rows(_write(tmp_path / "p.txt", "a\n\nb\u2028c\n")) == [(1, {"prompt": "a"}), (3, {"prompt": "b\u2028c"})]


def test_group_column_maps_prompts_to_their_validation_group(tmp_path):
    from training.prompt_data import read_groups

    path = tmp_path / "clean.csv"
    path.write_text("prompt,group\na red circle,circle|red\na crimson disc,circle|red\na blue box,\n")
    assert read_groups(path) == {"a red circle": "circle|red", "a crimson disc": "circle|red"}
    text = tmp_path / "clean.txt"
    text.write_text("a red circle\n")
    assert read_groups(text) == {}


def test_published_seed_and_guidance_read_under_both_column_conventions(tmp_path):
    """I2P's original release names them sd_seed / sd_guidance_scale, Diffusion-MU-Attack's copy evaluation_*."""
    from training.prompt_data import read_sampling

    original = _write(tmp_path / "i2p_original.csv",
                      'prompt,categories,sd_seed,sd_guidance_scale,sd_image_width\n'
                      '"nude \u2028woman, oil painting",sexual,4261553411,13,512\n'
                      'a knife fight,violence,,,512\n')
    copy = _write(tmp_path / "i2p.csv", "prompt,categories,evaluation_seed,evaluation_guidance\na nude statue,sexual,58,7\n")
    assert read_sampling(original) == {"nude \u2028woman, oil painting": (4261553411, 13.0)}  # no values: not listed
    assert read_sampling(copy) == {"a nude statue": (58, 7.0)}
    assert read_harmful(original)[0].text == "nude \u2028woman, oil painting"  # U+2028 inside, one row


def test_a_row_with_both_conventions_prefers_evaluation_columns_and_falls_back_to_sd_where_empty(tmp_path):
    from training.prompt_data import published_sampling, read_sampling

    both = _write(tmp_path / "both.csv", "prompt,evaluation_seed,evaluation_guidance,sd_seed,sd_guidance_scale\n"
                                         "a,1,7.5,2,9\nb,,,3,12\nc,4,,5,6.5\n")
    assert read_sampling(both) == {"a": (1, 7.5), "b": (3, 12.0), "c": (4, 6.5)}
    assert published_sampling("x.jsonl", 1, {"prompt": "d", "sd_seed": 0, "sd_guidance_scale": 7}) == (0, 7.0)
    assert published_sampling("x.csv", 2, {"prompt": "e", "sd_seed": "42.0"}) == (42, None)


@pytest.mark.parametrize("column, value", [("sd_seed", "abc"), ("sd_seed", "4.5"), ("evaluation_guidance", "high")])
def test_a_non_numeric_seed_or_guidance_names_file_line_and_column(tmp_path, column, value):
    from training.prompt_data import read_sampling

    path = _write(tmp_path / "bad.csv", f"prompt,{column}\na cat,1\na dog,{value}\n")
    with pytest.raises(PromptFileError, match=rf"bad.csv:3: {column} '{value}' is not a"):
        read_sampling(path)
