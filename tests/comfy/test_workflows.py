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


def ui_to_api(workflow: dict, node_classes: dict) -> dict:
    """Convert a UI-format workflow to the API format that /prompt takes."""
    links = {link[0]: link for link in workflow["links"]}
    api = {}
    for node in workflow["nodes"]:
        required = node_classes[node["type"]].INPUT_TYPES()["required"]
        linked = {i["name"]: [str(links[i["link"]][1]), links[i["link"]][2]] for i in node["inputs"]}
        widgets = iter(node["widgets_values"])
        inputs = {}
        for name in required:
            if name in linked:
                inputs[name] = linked[name]
                continue
            inputs[name] = next(widgets)
            if name in CONTROL_AFTER_GENERATE:
                next(widgets)
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
        socket = node_classes[nodes[target]["type"]].INPUT_TYPES()["required"][target_input["name"]][0]
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


def test_sd15_workflow_passes_comfyui_prompt_validation(node_classes, hgr_dir):
    """`execution.validate_prompt` (what /prompt runs) accepts the workflow once its model files exist.

    Validation only lists the model folders, so empty stand-ins for the checkpoint and the HGR do.
    """
    import execution
    import folder_paths

    api = ui_to_api(json.loads(SD15_WORKFLOW.read_text()), node_classes)
    assert api["5"]["class_type"] == "SafeCFGApply" and api["5"]["inputs"]["strength"] == 1.0
    checkpoint = Path(folder_paths.get_folder_paths("checkpoints")[0]) / api["1"]["inputs"]["ckpt_name"]
    hgr = hgr_dir / api["4"]["inputs"]["hgr_name"]
    stand_ins = [path for path in (checkpoint, hgr) if not path.exists()]
    for path in stand_ins:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    try:
        valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt("workflow-test", api, None))
    finally:
        for path in stand_ins:
            path.unlink()
    assert valid, (error, node_errors)
    assert node_errors == {}
    assert {api[o]["class_type"] for o in outputs} == {"SaveImage", "SafeCFGHGRInfo", "PreviewAny"}
