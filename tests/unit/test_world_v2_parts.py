"""Toy world v2's parts that need no ComfyUI: scenes, sub-word tokenizer, captions, prompt sets."""

import numpy as np
import pytest

from toyworld import bpe
from toyworld.captions import words
from toyworld.text import UNK, TextConfig, tokenize
from toyworld.v2 import captions, prompts, scenes
from toyworld.v2.scenes import CATEGORIES, LOOK_ALIKE, Scene, render


def _scene(**kw):
    return Scene(**{"shape": "circle", "colour": "green", "background": "white", "mark_seed": 3, **kw})


def test_each_harm_is_drawn_on_the_object_and_scales_with_its_opacity():
    plain = render(_scene()).astype(float)
    inside = scenes.object_mask(_scene())[::4, ::4] > 0.99  # the object's pixels at 32 px (nearest)
    for category in CATEGORIES:
        full = render(_scene(harms=(category,))).astype(float)
        half = render(_scene(harms=(category,), opacity=(0.5,))).astype(float)
        change = np.abs(full - plain).sum(2)
        assert change[inside].sum() > 0.6 * change.sum(), category  # mostly on the object itself
        ratio = np.abs(half - plain).sum() / np.abs(full - plain).sum()
        assert 0.4 < ratio < 0.6, (category, ratio)
    assert np.array_equal(render(_scene(harms=("hate",), opacity=(0.0,))), plain.astype(np.uint8))


def test_look_alikes_share_the_harms_colours():
    # dots are drawn in the blood colour, stripes in the hate strokes' ink: only structure differs
    dots = render(_scene(pattern="dots")).reshape(-1, 3)
    blood = render(_scene(harms=("violence",))).reshape(-1, 3)
    assert np.abs(dots - np.array(scenes.BLOOD)).sum(1).min() <= 6
    assert np.abs(blood - np.array(scenes.BLOOD)).sum(1).min() <= 6
    stripes = render(_scene(pattern="stripes")).reshape(-1, 3)
    assert np.abs(stripes - np.array(scenes.INK)).sum(1).min() <= 6
    # a nude pink object has no pixel colour a plain (shaded) pink one lacks; its spots differ in place
    body = scenes.object_mask(_scene())[::4, ::4] > 0.99
    skin = render(_scene(harms=("nudity",), colour="pink"))[body].astype(float)
    pink = render(_scene(colour="pink"))[body].astype(float)
    nearest = np.abs(skin[:, None, :] - pink[None, :, :]).sum(2).min(1)
    assert np.median(nearest) <= 8 and nearest.max() <= 40
    assert np.abs(skin - pink).sum(1).max() > 80


def test_labels_count_a_harm_from_a_quarter_opacity():
    pool = [_scene(harms=("nudity",), opacity=(o,)) for o in (0.1, 0.24, 0.25, 0.9)]
    assert scenes.labels(pool)["harms"][:, CATEGORIES.index("nudity")].tolist() == [0, 0, 1, 1]
    assert set(LOOK_ALIKE) == set(CATEGORIES)


def test_bpe_keeps_frequent_words_whole_and_splits_rare_ones_into_shared_pieces():
    counts = {"red": 100, "racist": 3, "supremacist": 2, "raced": 1}
    merges = bpe.learn_merges(counts, 6)
    assert merges == bpe.learn_merges(dict(reversed(counts.items())), 6)  # order of the counts is irrelevant
    assert bpe.encode_word("red", merges) == ["red"]
    assert "".join(bpe.encode_word("rasist", merges)) == "rasist"
    assert set(bpe.encode_word("racist", merges)) & set(bpe.encode_word("supremacist", merges))
    with pytest.raises(ValueError, match="outside the tokenizer's alphabet"):
        bpe.encode_word("naïve", merges)


def test_sub_word_config_round_trips_and_never_maps_a_word_to_unk():
    merges = bpe.learn_merges(captions.word_counts(2000), 150)
    cfg = TextConfig.with_merges(merges, max_tokens=48)
    assert TextConfig.from_json(cfg.to_json()) == cfg
    ids = tokenize(cfg, ["a nakd blodyy zxqv circle", ""])
    assert not (ids == UNK).any()
    assert (ids[0] > 0).sum() > 7  # <bos>, pieces of every word, <eos>
    v1 = TextConfig(vocab=("circle",))
    assert tokenize(v1, ["a circle"])[0, 1].item() == UNK and v1.merges == ()


def test_reserved_phrasings_use_words_no_training_file_contains():
    seen = {w for p in captions.phrasings(reserved=False) for w in words(p.text)}
    for p in captions.phrasings(reserved=True):
        assert not (set(words(p.text)) - {"in", "the", "with"}) & seen, p.text


def test_training_captions_misspell_some_words():
    rng = np.random.default_rng(0)
    known = set(captions.word_counts(500))
    texts = [captions.training_caption(s, rng) for s in scenes.scene_pool(3000, 1)]
    unknown = [w for t in texts for w in words(t) if w not in known]
    share = len(unknown) / sum(len(words(t)) for t in texts)
    assert 0.005 < share < captions.TYPO_RATE


def test_prompt_sets_split_scenes_and_keep_the_look_alike_in_the_safe_counterpart(tmp_path):
    train, test = set(prompts.scene_split("train")), set(prompts.scene_split("test"))
    assert not train & test and len(train) + len(test) == 240 and len(test) == 60
    for position in range(4):
        assert {s[position] for s in train} == {s[position] for s in test}
    for spec in prompts.harm_with_look_alike(n=30):
        attribute, value = LOOK_ALIKE[spec.category]
        assert getattr(spec, attribute) == value
        pattern_words = captions.PATTERN_WORDS[spec.pattern]
        assert any(w in spec.safe_text for w in pattern_words), spec.safe_text
    assert {s.categories for s in prompts.two_harm(n=6)} == {("hate", "nudity"), ("hate", "violence"),
                                                             ("nudity", "violence")}
    negatives = prompts.hard_negative(n=9)
    assert all(s.colour == "pink" or s.pattern != "plain" for s in negatives)
    with pytest.raises(ValueError, match="reserved"):
        prompts.harmful("train", reserved=True)
    paths = prompts.write_prompt_files(tmp_path, 40, 40)
    rows = paths["harmful_train.csv"].read_text().splitlines()
    assert rows[0] == "prompt,category,safe_prompt,group" and len(rows) == 41
    assert sum('"hate,' in r or ",hate," in r for r in rows) >= 10
    assert not any(r.split(",")[0] in {s.text for s in prompts.harmful(reserved=True)} for r in rows[1:])


def test_styles_relight_the_background_and_leave_the_object_alone():
    from toyworld.v2 import styles

    scene = _scene(background="white", harms=("violence",))
    plain = scenes.render_batch([scene])[0]
    cover = styles.object_coverage(scene)
    for style in styles.STYLES:
        styled = styles.render_styled([scene], style)[0]
        assert np.array_equal(styled[:, cover == 1.0], plain[:, cover == 1.0]), style  # object and its harm kept
        background = cover == 0.0
        assert (styled[:, background] <= plain[:, background] + 1e-6).all(), style
        assert (plain[:, background] - styled[:, background]).mean() > 0.05, style  # visibly relit
    dusk = styles.background_light("dusk")
    assert dusk[0, 0] > 0.97 and dusk[-1, -1] < 0.57  # darker towards the lower right
    with pytest.raises(ValueError, match="unknown style 'noir'"):
        styles.background_light("noir")


def test_a_scene_mix_must_add_up_to_one_and_steers_the_harms():
    from toyworld.v2.styles import HARM_HEAVY_MIX

    heavy = scenes.scene_pool(400, 0, mix=HARM_HEAVY_MIX)
    base = scenes.scene_pool(400, 0)
    share = [np.mean(["violence" in s.harms for s in pool]) for pool in (heavy, base)]
    assert share[0] > 0.5 > 0.3 > share[1]  # 59% expected vs 24%
    with pytest.raises(ValueError, match="add up to 1"):
        scenes.scene_pool(4, 0, mix={(): 0.5})


def test_the_v2_pool_is_unlabelled_train_scene_prompts_not_the_hgrs_training_set(tmp_path):
    from training.prompt_data import read_hidden_truth, read_pool

    pool = prompts.write_pool_file(tmp_path / "pool.csv", 30, 20)
    texts, truth = read_pool(pool), read_hidden_truth(pool)
    assert pool.read_text().splitlines()[0] == "prompt,category"
    harmful = [t for t in texts if truth[t]]
    assert len(harmful) == 30 and {c for t in harmful for c in truth[t]} == set(CATEGORIES)
    assert sum(len(truth[t]) == 2 for t in harmful) == 6  # 20% with two harms
    assert not set(texts) & {s.text for s in prompts.clean() + prompts.harmful() + prompts.hard_negative()}
    training = prompts.write_prompt_files(tmp_path / "hgr", 30, 20)["harmful_train.csv"].read_text()
    assert sum(t in training for t in harmful) < len(harmful) // 2  # other prompt seeds than the HGR's files
    with pytest.raises(ValueError, match="two_harm_share"):
        prompts.write_pool_file(tmp_path / "bad.csv", two_harm_share=1.5)


@pytest.mark.parametrize("world_args, own_flag", [([], "--design"), (["--world", "v2"], "--design"),
                                                   (["--world", "v1"], "--monitor-every")])
def test_toyworld_build_builds_v2_by_default_and_v1_on_request(world_args, own_flag, capsys):
    from toyworld import build

    with pytest.raises(SystemExit) as done:
        build.main([*world_args, "--help"])
    printed = capsys.readouterr().out
    assert done.value.code == 0 and own_flag in printed
    assert ("--design" in printed) != ("--monitor-every" in printed)  # one world's flags, not both
