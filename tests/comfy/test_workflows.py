"""The example workflows are valid graphs for the real ComfyUI: known nodes, typed links, widgets,
and an API form that ComfyUI's own `execution.validate_prompt` accepts."""

import asyncio
import json
from pathlib import Path

import pytest

WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))
CONTROL_AFTER_GENERATE = {"seed", "noise_seed"}  # the UI stores an extra widget value after these
SD15_WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "safecfg_sd15_txt2img.json"


@pytest.fixture(scope="module")
def node_classes(comfy_nodes):
    """ComfyUI's node classes, with core's Preview as Text (comfy_extras, not loaded by the fixture)."""
    if "PreviewAny" not in comfy_nodes.NODE_CLASS_MAPPINGS:
        path = Path(comfy_nodes.__file__).parent / "comfy_extras" / "nodes_preview_any.py"
        assert asyncio.run(comfy_nodes.load_custom_node(str(path), module_parent="comfy_extras"))
    return comfy_nodes.NODE_CLASS_MAPPINGS


WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def _declared_inputs(node_class) -> dict:
    types = node_class.INPUT_TYPES()
    return {**types["required"], **types.get("optional", {})}


def _is_widget(spec) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES


def ui_to_api(workflow: dict, node_classes: dict) -> dict:
    """Convert a UI-format workflow to the API format that /prompt takes."""
    links = {link[0]: link for link in workflow["links"]}
    api = {}
    for node in workflow["nodes"]:
        declared = _declared_inputs(node_classes[node["type"]])
        linked = {i["name"]: [str(links[i["link"]][1]), links[i["link"]][2]] for i in node["inputs"]}
        widgets = iter(node["widgets_values"])
        inputs = {}
        for name, spec in declared.items():
            if name in linked:
                inputs[name] = linked[name]
                continue
            if not _is_widget(spec):
                continue  # an optional socket left unconnected
            inputs[name] = next(widgets)
            if name in CONTROL_AFTER_GENERATE or (len(spec) > 1 and spec[1].get("image_upload")):
                next(widgets)  # the UI keeps the control-after-generate / upload-button widget's value too
        assert next(widgets, None) is None, f"{node['type']} has more widget values than inputs"
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def test_there_is_an_example_workflow():
    assert WORKFLOWS, "workflows/ must hold at least one example"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_links_match_node_definitions(node_classes, path):
    from comfy_execution.validation import validate_node_input

    workflow = json.loads(path.read_text())
    assert workflow["version"] == 0.4
    nodes = {node["id"]: node for node in workflow["nodes"]}
    for node in nodes.values():
        assert node["type"] in node_classes, node["type"]
    for link_id, source, source_slot, target, target_slot, kind in workflow["links"]:
        source_class = node_classes[nodes[source]["type"]]
        assert source_class.RETURN_TYPES[source_slot] == kind, (link_id, source_class.RETURN_TYPES)
        target_input = nodes[target]["inputs"][target_slot]
        socket = _declared_inputs(node_classes[nodes[target]["type"]])[target_input["name"]][0]
        assert target_input["link"] == link_id and target_input["type"] == socket
        assert validate_node_input(kind, socket), (link_id, kind, socket)


def test_sd15_workflow_shows_the_hgr_info_text_on_the_canvas(node_classes):
    """The frontend draws the text of core's Preview as Text node; HGR Info's output feeds one."""
    workflow = json.loads(SD15_WORKFLOW.read_text())
    api = ui_to_api(workflow, node_classes)
    info = [i for i, node in api.items() if node["class_type"] == "SafeCFGHGRInfo"]
    previews = [node for node in api.values() if node["class_type"] == "PreviewAny"]
    assert len(info) == 1
    assert [p["inputs"]["source"] for p in previews] == [[info[0], 0]]


MODEL_FILES = {"CheckpointLoaderSimple": ("ckpt_name", "checkpoints"), "SafeCFGLoadHGR": ("hgr_name", "hgr"),
               "LoadImage": ("image", "input")}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_pass_comfyui_prompt_validation(node_classes, hgr_dir, path):
    """`execution.validate_prompt` (what /prompt runs) accepts each workflow once its files exist.

    Validation only lists the model and input folders, so empty stand-ins for the files do.
    """
    import execution
    import folder_paths

    api = ui_to_api(json.loads(path.read_text()), node_classes)
    stand_ins = []
    for node in api.values():
        if node["class_type"] in MODEL_FILES:
            name, folder = MODEL_FILES[node["class_type"]]
            base = folder_paths.get_input_directory() if folder == "input" else folder_paths.get_folder_paths(folder)[0]
            file = Path(base) / node["inputs"][name]
            if not file.exists():
                file.parent.mkdir(parents=True, exist_ok=True)
                file.touch()
                stand_ins.append(file)
    try:
        valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("workflow-test", api, None))
    finally:
        for file in stand_ins:
            file.unlink()
    assert valid, (error, node_errors)
    assert node_errors == {}
    assert "SaveImage" in {api[o]["class_type"] for o in outputs}


def test_sd15_workflow_applies_full_strength_and_the_gated_one_gates_the_saved_images(node_classes):
    api = ui_to_api(json.loads(SD15_WORKFLOW.read_text()), node_classes)
    assert api["5"]["class_type"] == "SafeCFGApply" and api["5"]["inputs"]["strength"] == 1.0
    gated = ui_to_api(json.loads((SD15_WORKFLOW.parent / "safecfg_sd15_txt2img_gated.json").read_text()), node_classes)
    saves = [n for n in gated.values() if n["class_type"] == "SaveImage"]
    (gate_id,) = [i for i, n in gated.items() if n["class_type"] == "SafeCFGGate"]
    assert [s["inputs"]["images"] for s in saves] == [[gate_id, 0]]
    assert gated[gated[gate_id]["inputs"]["scores"][0]]["class_type"] == "SafeCFGSamplingScore"
