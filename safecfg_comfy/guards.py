"""SafeCFG is never silently off: refuse when sampling starts, and check every model evaluation.

ComfyUI runs SafeCFG's pre-CFG hook only on guidance paths that go through `sampling_function`
(comfy/samplers.py) or replay its pre-CFG hooks (PerpNegGuider does). On any other path the
operator believes the graph is safe while SafeCFG does nothing, which is worse than no node. So
`install` puts three guards on the patched clone:

1. `check_sampling_start`, an OUTER_SAMPLE wrapper: the guider and its conditioning, the order of
   the pre-CFG hooks and the model's noise schedule are checked before the first step; a known bad
   path is refused with an error that names the node to remove or reorder.
2. `check_evaluation`, a PREDICT_NOISE wrapper: raises when a denoiser evaluation returned
   without the hook having run (a custom guider or patch that no list foresees). If a guider
   bypasses PREDICT_NOISE wrappers too, the OUTER_SAMPLE wrapper raises once sampling returns
   (the image is never handed on).
3. `check_conds`, called by the hook: ComfyUI hands a skipped branch over as zeros, not None;
   SafeCFG must never redirect against a zero "unconditional".

Which paths redirect and which refuse is measured by `benchmarks.guidance_paths`.
"""

from __future__ import annotations

import logging

import comfy.patcher_extension
import torch

from .model_kinds import prediction_type
from .sampling_scores import RunScores

log = logging.getLogger(__name__)

WRAPPER_KEY = "safecfg"  # key of our OUTER_SAMPLE / PREDICT_NOISE wrappers on the ModelPatcher
RUN_KEY = "safecfg_run"  # model_options entry holding the RunState of the sampling run in progress
HOOK_MARK = "safecfg_pre_cfg_hook"  # attribute that marks SafeCFG's hooks (clone keeps functions as they are)
_PROBE_PERCENTS = (0.05, 0.25, 0.5, 0.75, 0.95)

# Guiders that cannot carry SafeCFG, by the class whose predict_noise they run.
REFUSED_GUIDERS = {
    "Guider_DualCFG": "DualCFGGuider calls ComfyUI's CFG itself and never runs pre-CFG hooks, so SafeCFG "
                      "would be silently off: use CFGGuider (one positive, one negative) instead of DualCFGGuider",
}
# Guiders whose predict_noise runs the pre-CFG hooks with [positive, negative, ...] first, and the
# conditioning each needs (ours disables the cfg = 1 shortcut, so none of them is dropped).
SUPPORTED_GUIDERS = {
    "CFGGuider": ("positive", "negative"),
    "Guider_PerpNeg": ("positive", "negative", "empty_negative_prompt"),
}
GUIDER_NODES = {"CFGGuider": "CFGGuider", "Guider_Basic": "BasicGuider", "Guider_PerpNeg": "PerpNegGuider",
                "Guider_DualCFG": "DualCFGGuider"}


AT_START, AT_STEP, AT_END = "sampling start", "first step it cannot act on", "end of sampling"


class GuidancePathError(RuntimeError):
    """SafeCFG cannot act on this sampling graph; the message names the node to remove or reorder.

    stage: when it was raised (AT_START, AT_STEP or AT_END), for reports.
    """

    def __init__(self, message: str, stage: str = AT_START):
        super().__init__(message)
        self.stage = stage


class RunState:
    """One sampling run's counts and harm scores, shared by the hook and the wrappers through model_options."""

    def __init__(self):
        self.hook_calls = 0
        self.evaluations = 0
        self.scores = RunScores()


def mark_hook(hook):
    """Mark a pre-CFG function as SafeCFG's, so the order check can tell it from other rewrites."""
    setattr(hook, HOOK_MARK, True)
    return hook


def record_hook_call(model_options: dict) -> None:
    """Called by the hook on every evaluation (inside the sigma window or not): the hook ran."""
    state = model_options.get(RUN_KEY)
    if state is not None:
        state.hook_calls += 1


def record_harm(model_options: dict, hook, hgr, sigma, harm) -> None:
    """Called by the hook with a redirected step's harm, for `SafeCFGSamplingScore` (`sampling_scores`)."""
    state = model_options.get(RUN_KEY)
    if state is not None:
        state.scores.record(hook, hgr, sigma, harm)


def node_name(fn) -> str:
    """The node that installed a patch function: 'APG' for 'APG.execute.<locals>.pre_cfg_function'."""
    qualname = getattr(fn, "__qualname__", None) or type(fn).__name__
    return qualname.split(".<locals>")[0].split(".")[0]


def _guider_node(guider) -> str:
    return GUIDER_NODES.get(type(guider).__name__, type(guider).__name__)


def schedule_signature(model_sampling) -> tuple:
    """What the patch-time checks assumed: prediction classes, sigma range and sigmas at fixed percents.

    The leaf class is left out: ComfyUI builds a fresh one per model (`ModelSampling`) and per
    ModelSampling* node (`ModelSamplingAdvanced`), so an identical schedule compares equal.
    """
    classes = tuple(cls.__name__ for cls in type(model_sampling).__mro__[1:])
    sigmas = [model_sampling.sigma_min, model_sampling.sigma_max,
              *(model_sampling.percent_to_sigma(p) for p in _PROBE_PERCENTS)]
    return (prediction_type(model_sampling), classes, tuple(round(float(s), 4) for s in sigmas))


def check_schedule(model_patcher, expected: tuple) -> None:
    """Refuse a model whose prediction type or noise schedule changed after SafeCFGApply."""
    actual = schedule_signature(model_patcher.get_model_object("model_sampling"))
    if actual != expected:
        raise GuidancePathError(
            f"SafeCFG: the model's prediction type or noise schedule changed after SafeCFGApply "
            f"(was {expected[0]}-prediction, sigma {expected[2][0]:.4g}..{expected[2][1]:.4g}; now "
            f"{actual[0] or 'unsupported'}-prediction, sigma {actual[2][0]:.4g}..{actual[2][1]:.4g}): a "
            "ModelSampling node (ModelSamplingDiscrete, ModelSamplingSD3, ModelSamplingFlux, ...) is placed after "
            "SafeCFGApply. Move it before SafeCFGApply, so that SafeCFG's checks see the model that samples."
        )


def check_pre_cfg_order(model_options: dict, hook) -> None:
    """SafeCFG's hook must still be installed and come before every other pre-CFG rewrite.

    The HGR was trained on plain CFG guidance; a rewrite applied before it (APG, TCFG, FreSca, ...)
    hands it a different direction (measured: TCFG before SafeCFG leaves more harm than after it).
    Rewrites applied after it act on the redirected guidance, as cfg and post-CFG patches do.
    Other SafeCFG hooks may come first: stacked SafeCFGApply nodes (e.g. two HGRs trained for
    different categories) each redirect what the previous one left.
    """
    hooks = list(model_options.get("sampler_pre_cfg_function", []))
    if hook not in hooks:
        raise GuidancePathError(
            "SafeCFG: a node after SafeCFGApply removed SafeCFG's pre-CFG hook from the model, so SafeCFG would "
            "be silently off; remove that node or apply SafeCFGApply after it.")
    before = [node_name(fn) for fn in hooks[:hooks.index(hook)] if not getattr(fn, HOOK_MARK, False)]
    if before:
        names = ", ".join(before)
        raise GuidancePathError(
            f"SafeCFG: the pre-CFG patch {names} is applied before SafeCFGApply, so it rewrites the guidance "
            f"before the HGR sees it; the HGR only knows plain CFG guidance. Reorder: model -> SafeCFGApply -> "
            f"{names} (SafeCFG first).")


def check_guider(guider) -> None:
    """Refuse guiders that skip pre-CFG hooks or lack the negative branch; warn on unknown ones."""
    owner = type(guider).predict_noise.__qualname__.split(".")[0]
    if owner in REFUSED_GUIDERS:
        raise GuidancePathError(f"SafeCFG: {REFUSED_GUIDERS[owner]}.")
    if owner not in SUPPORTED_GUIDERS:
        log.warning("SafeCFG: guider %s is not one SafeCFG was measured with; every step is checked to "
                    "have run SafeCFG's hook", type(guider).__name__)
        return
    conds = getattr(guider, "conds", None) or getattr(guider, "original_conds", {})
    missing = [name for name in SUPPORTED_GUIDERS[owner] if not conds.get(name)]
    if "negative" in missing:
        node = _guider_node(guider)
        fix = "replace BasicGuider with CFGGuider" if node == "BasicGuider" else f"give {node}"
        raise GuidancePathError(
            f"SafeCFG: {node} has no negative (unconditional) conditioning, so there is no CFG direction for "
            f"SafeCFG to redirect and it would change the image for no reason: {fix} and a negative prompt "
            "(an empty prompt works).")
    if missing:
        raise GuidancePathError(f"SafeCFG: {_guider_node(guider)} is missing its {missing} conditioning.")


def check_sampling_start(guider, hook, hgr, expected_schedule: tuple) -> None:
    """Everything that can be known before the first step (see the module docstring)."""
    from .compat import check_compatible

    check_guider(guider)
    check_pre_cfg_order(guider.model_options, hook)
    check_schedule(guider.model_patcher, expected_schedule)
    check_compatible(guider.model_patcher, hgr)


def _skipped(conds, conds_out, index: int, active: torch.Tensor) -> bool:
    """Branch `index` was not evaluated: no conditioning, or (timestep range, area) all zeros."""
    if len(conds_out) <= index or conds_out[index] is None:
        return True
    if len(conds) > index and not conds[index]:
        return True
    out = conds_out[index]
    zero = out.reshape(out.shape[0], -1).abs().amax(dim=1) == 0
    return bool((zero & active.to(zero.device).reshape(-1).expand_as(zero)).any())


def check_conds(conds, conds_out, sigma: torch.Tensor, active: torch.Tensor) -> None:
    """Refuse a step where the conditional or unconditional branch was skipped (METHOD.md section 2 needs both)."""
    at = f"sigma {float(sigma.reshape(-1)[0]):.4g}"
    if _skipped(conds, conds_out, 1, active):
        raise GuidancePathError(
            f"SafeCFG: the negative (unconditional) prediction was not evaluated at {at} (it arrives as zeros), "
            "so the CFG direction would be measured against zero. Use CFGGuider or KSampler with a negative prompt "
            "that covers every step SafeCFG acts on (a negative limited by ConditioningSetTimestepRange or an "
            "area mask does not), or narrow SafeCFGApply's start/end percent to the steps it covers.", AT_STEP)
    if _skipped(conds, conds_out, 0, active):
        raise GuidancePathError(
            f"SafeCFG: the positive prediction was not evaluated at {at} (a positive limited by "
            "ConditioningSetTimestepRange or an area mask); make the positive cover every step SafeCFG acts on.", AT_STEP)


def check_evaluation(executor, x, timestep, model_options={}, seed=None):  # noqa: B006 (ComfyUI's signature)
    """PREDICT_NOISE wrapper: a denoiser evaluation must have run SafeCFG's hook."""
    state = model_options.get(RUN_KEY) or executor.class_obj.model_options.get(RUN_KEY)
    if state is None:  # sampling bypassed our OUTER_SAMPLE wrapper: check this evaluation on its own
        state = RunState()
        model_options = {**model_options, RUN_KEY: state}
    calls = state.hook_calls
    out = executor(x, timestep, model_options, seed)
    if state.hook_calls == calls:
        raise GuidancePathError(
            f"SafeCFG: {_guider_node(executor.class_obj)} evaluated the model at sigma "
            f"{float(torch.as_tensor(timestep).reshape(-1)[0]):.4g} without running SafeCFG's pre-CFG hook, so "
            "SafeCFG would be silently off. Sample with CFGGuider, KSampler or SamplerCustom, or remove the node "
            "that replaces ComfyUI's sampling function.", AT_STEP)
    state.evaluations += 1
    return out


def _sigma_count(args, kwargs) -> int:
    sigmas = kwargs.get("sigmas", args[3] if len(args) > 3 else None)
    return int(sigmas.shape[-1]) if sigmas is not None else 0


def install(patched, hook, hgr) -> None:
    """Add the guards to a patched ModelPatcher clone; `hook` is the SafeCFG pre-CFG hook on it."""
    mark_hook(hook)
    expected = schedule_signature(patched.get_model_object("model_sampling"))

    def safecfg_outer_sample(executor, *args, **kwargs):
        guider = executor.class_obj
        check_sampling_start(guider, hook, hgr, expected)
        state = guider.model_options.get(RUN_KEY)  # set already by a stacked SafeCFGApply's wrapper
        owner = state is None
        if owner:
            state = guider.model_options[RUN_KEY] = RunState()
        try:
            out = executor(*args, **kwargs)
        finally:
            if owner:
                guider.model_options.pop(RUN_KEY, None)
        if state.hook_calls == 0 and _sigma_count(args, kwargs) > 1:
            raise GuidancePathError(
                f"SafeCFG: sampling with {_guider_node(guider)} finished without SafeCFG's hook running once, so "
                "SafeCFG was off; the image is withheld. Sample with CFGGuider, KSampler or SamplerCustom.", AT_END)
        if owner and isinstance(out, torch.Tensor) and not out.is_nested:
            state.scores.store(out)  # per output image, keyed by its latent's content
        return out

    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, safecfg_outer_sample)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, WRAPPER_KEY, check_evaluation)
