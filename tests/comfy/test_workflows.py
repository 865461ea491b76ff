"""The example workflows are valid graphs for the real ComfyUI: known nodes, typed links, widgets."""

import json
from pathlib import Path

import pytest

WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))
CONTROL_AFTER_GENERATE = {"seed", "noise_seed"}  # the UI stores an extra widget value after these


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
def test_workflow_links_match_node_definitions(comfy_nodes, path):
    workflow = json.loads(path.read_text())
    assert workflow["version"] == 0.4
    classes = comfy_nodes.NODE_CLASS_MAPPINGS
    nodes = {node["id"]: node for node in workflow["nodes"]}
    for node in nodes.values():
        assert node["type"] in classes, node["type"]
    for link_id, source, source_slot, target, target_slot, kind in workflow["links"]:
        source_class = classes[nodes[source]["type"]]
        assert source_class.RETURN_TYPES[source_slot] == kind, (link_id, source_class.RETURN_TYPES)
        target_input = nodes[target]["inputs"][target_slot]
        assert target_input["link"] == link_id and target_input["type"] == kind
        assert classes[nodes[target]["type"]].INPUT_TYPES()["required"][target_input["name"]][0] == kind
    api = ui_to_api(workflow, classes)
    assert api["5"]["class_type"] == "SafeCFGApply"
    assert api["5"]["inputs"]["strength"] == 1.0
