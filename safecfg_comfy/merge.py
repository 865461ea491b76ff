"""Merge two models the way ComfyUI's stock `ModelMergeSimple` node does (its own class, called here).

`ModelMergeSimple.merge(model1, model2, ratio)` clones model1 and adds model2's UNet weights as
patches, so the merged weight is ``ratio * w1 + (1 - ratio) * w2``, computed by ComfyUI when it
loads the model: what a user who merges a base and a fine-tune in a graph samples with.
"""

from __future__ import annotations


def merge_models(model1, model2, ratio: float):
    """A clone of ModelPatcher `model1` with `model2` merged in (`ratio` of model1's weights)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"merge ratio must be in [0, 1], got {ratio}")
    from comfy_extras.nodes_model_merging import ModelMergeSimple

    return ModelMergeSimple().merge(model1, model2, ratio)[0]
