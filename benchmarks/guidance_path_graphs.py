"""The guidance paths `benchmarks.guidance_paths` measures: how a user wires each one in ComfyUI, and
how to build it with SafeCFGApply (or without, for the unprotected column) from ComfyUI's own nodes.

Why each path works or is refused is written down in `benchmarks/guidance_paths.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

REFERENCE = "CFGGuider"


@dataclass(frozen=True)
class GuidancePath:
    """One row: how a user wires it, and how to build it with or without SafeCFG.

    build(ctx, safe) returns ("guider", guider) or ("model", model) for KSampler's path; `safe`
    is SafeCFGApply (or the identity, for the unprotected column) and the builder puts it where the
    graph description says. refusal: text the error must contain if SafeCFG refuses (the node it names).
    """

    name: str
    graph: str
    build: Callable
    refusal: str = ""


@dataclass
class Context:
    """What every path samples with: the toy world, conditioning of the prompts, settings."""

    world: object
    positive: list
    negative: list
    empty: list
    cfg: float
    steps: int
    sampler: str = "euler"
    scheduler: str = "normal"


def _cfg_guider(ctx, model, negative=None):
    from comfy_extras.nodes_custom_sampler import CFGGuider

    return "guider", CFGGuider.execute(model, ctx.positive, negative or ctx.negative, ctx.cfg).result[0]


def _patched(node_cls, **inputs):
    """A model patch node of ComfyUI (V3 `execute` or legacy FUNCTION) as model -> model."""
    def apply(model):
        if hasattr(node_cls, "FUNCTION"):
            return getattr(node_cls(), node_cls.FUNCTION)(model, **inputs)[0]
        return node_cls.execute(model, **inputs).result[0]

    return apply


def _after(patch):
    """model -> SafeCFGApply -> patch -> CFGGuider."""
    return lambda ctx, safe: _cfg_guider(ctx, patch()(safe(ctx.world.model)))


def _before(patch):
    """model -> patch -> SafeCFGApply -> CFGGuider."""
    return lambda ctx, safe: _cfg_guider(ctx, safe(patch()(ctx.world.model)))


def _reference(ctx, safe):
    return _cfg_guider(ctx, safe(ctx.world.model))


def _ksampler(ctx, safe):
    return "model", safe(ctx.world.model)


def _perp_neg_guider(ctx, safe):
    from comfy_extras.nodes_perpneg import PerpNegGuider

    guider = PerpNegGuider.execute(safe(ctx.world.model), ctx.positive, ctx.negative, ctx.empty, ctx.cfg, 1.0)
    return "guider", guider.result[0]


def _perp_neg_legacy(ctx, safe):
    from comfy_extras.nodes_perpneg import PerpNeg

    return _cfg_guider(ctx, PerpNeg.execute(safe(ctx.world.model), ctx.empty, 1.0).result[0])


def _dual_cfg(ctx, safe):
    from comfy_extras.nodes_custom_sampler import DualCFGGuider

    model = safe(ctx.world.model)
    return "guider", DualCFGGuider.execute(model, ctx.positive, ctx.empty, ctx.negative, ctx.cfg, ctx.cfg, "regular").result[0]


def _basic(ctx, safe):
    from comfy_extras.nodes_custom_sampler import BasicGuider

    return "guider", BasicGuider.execute(safe(ctx.world.model), ctx.positive).result[0]


def _timestep_range_negative(ctx, safe):
    import nodes

    (negative,) = nodes.ConditioningSetTimestepRange().set_range(ctx.negative, 0.0, 0.5)
    return _cfg_guider(ctx, safe(ctx.world.model), negative)


def _twice(ctx, safe):
    return _cfg_guider(ctx, safe(safe(ctx.world.model)))


def _custom_guider(ctx, safe):
    import comfy.samplers

    class ThirdPartyGuider(comfy.samplers.CFGGuider):
        """Stands in for a custom guider no list names that computes CFG itself (as DualCFGGuider does)."""

        def predict_noise(self, x, timestep, model_options={}, seed=None):  # noqa: B006 (ComfyUI's signature)
            conds = [self.conds.get("positive"), self.conds.get("negative")]
            cond, uncond = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
            return comfy.samplers.cfg_function(self.inner_model, cond, uncond, self.cfg, x, timestep, model_options)

    guider = ThirdPartyGuider(safe(ctx.world.model))
    guider.set_conds(ctx.positive, ctx.negative)
    guider.set_cfg(ctx.cfg)
    return "guider", guider


def _node(module: str, name: str, **inputs):
    """A deferred ComfyUI node patch (ComfyUI is imported only once set up)."""
    def make():
        import importlib

        return _patched(getattr(importlib.import_module(module), name), **inputs)

    return make


_PAG = _node("comfy_extras.nodes_pag", "PerturbedAttentionGuidance", scale=3.0)
_SAG = _node("comfy_extras.nodes_sag", "SelfAttentionGuidance", scale=0.5, blur_sigma=2.0)
_APG = _node("comfy_extras.nodes_apg", "APG", eta=1.0, norm_threshold=5.0, momentum=0.0)
_TCFG = _node("comfy_extras.nodes_tcfg", "TCFG")
_RESCALE = _node("comfy_extras.nodes_model_advanced", "RescaleCFG", multiplier=0.7)
_ZERO_STAR = _node("comfy_extras.nodes_cfg", "CFGZeroStar")
_MS_EPS = _node("comfy_extras.nodes_model_advanced", "ModelSamplingDiscrete", sampling="eps", zsnr=False)
_MS_V = _node("comfy_extras.nodes_model_advanced", "ModelSamplingDiscrete", sampling="v_prediction", zsnr=False)
_MS_ZSNR = _node("comfy_extras.nodes_model_advanced", "ModelSamplingDiscrete", sampling="eps", zsnr=True)

PATHS = (
    GuidancePath(REFERENCE, "SafeCFGApply -> CFGGuider -> SamplerCustomAdvanced", _reference),
    GuidancePath("KSampler", "SafeCFGApply -> KSampler (comfy.sample.sample)", _ksampler),
    GuidancePath("PerpNegGuider", "SafeCFGApply -> PerpNegGuider (neg_scale 1)", _perp_neg_guider),
    GuidancePath("PerpNeg (legacy node)", "SafeCFGApply -> PerpNeg (neg_scale 1) -> CFGGuider", _perp_neg_legacy),
    GuidancePath("PerturbedAttentionGuidance", "SafeCFGApply -> PAG (scale 3) -> CFGGuider", _after(_PAG)),
    GuidancePath("SelfAttentionGuidance", "SafeCFGApply -> SAG (scale 0.5) -> CFGGuider", _after(_SAG)),
    GuidancePath("APG after SafeCFG", "SafeCFGApply -> APG -> CFGGuider", _after(_APG)),
    GuidancePath("TCFG after SafeCFG", "SafeCFGApply -> TCFG -> CFGGuider", _after(_TCFG)),
    GuidancePath("RescaleCFG", "SafeCFGApply -> RescaleCFG (0.7) -> CFGGuider", _after(_RESCALE)),
    GuidancePath("CFGZeroStar", "SafeCFGApply -> CFGZeroStar -> CFGGuider", _after(_ZERO_STAR)),
    GuidancePath("ModelSamplingDiscrete (same schedule) after", "SafeCFGApply -> ModelSamplingDiscrete (eps) -> CFGGuider",
                 _after(_MS_EPS)),
    GuidancePath("SafeCFGApply twice (stacked HGRs)", "SafeCFGApply -> SafeCFGApply -> CFGGuider", _twice),
    GuidancePath("DualCFGGuider", "SafeCFGApply -> DualCFGGuider", _dual_cfg, refusal="use CFGGuider"),
    GuidancePath("BasicGuider", "SafeCFGApply -> BasicGuider", _basic, refusal="replace BasicGuider with CFGGuider"),
    GuidancePath("APG before SafeCFG", "APG -> SafeCFGApply -> CFGGuider", _before(_APG), refusal="SafeCFGApply -> APG"),
    GuidancePath("TCFG before SafeCFG", "TCFG -> SafeCFGApply -> CFGGuider", _before(_TCFG), refusal="SafeCFGApply -> TCFG"),
    GuidancePath("ModelSamplingDiscrete v_prediction after", "SafeCFGApply -> ModelSamplingDiscrete (v) -> CFGGuider",
                 _after(_MS_V), refusal="ModelSamplingDiscrete"),
    GuidancePath("ModelSamplingDiscrete zsnr after", "SafeCFGApply -> ModelSamplingDiscrete (eps, zsnr) -> CFGGuider",
                 _after(_MS_ZSNR), refusal="Move it before SafeCFGApply"),
    GuidancePath("ModelSamplingDiscrete v_prediction before", "ModelSamplingDiscrete (v) -> SafeCFGApply",
                 _before(_MS_V), refusal="v-prediction"),
    GuidancePath("Negative limited to part of sampling", "ConditioningSetTimestepRange(negative, 0-0.5) -> CFGGuider",
                 _timestep_range_negative, refusal="ConditioningSetTimestepRange"),
    GuidancePath("Custom guider computing CFG itself", "SafeCFGApply -> (third-party guider)", _custom_guider,
                 refusal="without running SafeCFG's pre-CFG hook"),
)

UNTESTED = (
    ("SkipLayerGuidanceDiT / SkipLayerGuidanceDiTSimple / SkipLayerGuidanceSD3",
     "patch DiT blocks only (SD3, Flux...); no tiny DiT model here. Post-CFG and cond-batch patches keep the "
     "hook running, so the guards cannot tell; not measured"),
    ("FreSca, LatentApplyOperationCFG and other pre-CFG rewrites",
     "before SafeCFGApply: refused by the same order check as APG/TCFG; after it: allowed, not measured"),
)
