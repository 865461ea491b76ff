"""The folders depend on each other in one direction only (issue 11, section 1).

Lowest first: hgr_core (pure tensor math) <- safecfg_comfy (ComfyUI's runtime) <- toyworld (a
fixture) <- training <- benchmarks <- plugins (the eval-learn plugin, which imports the benchmarks'
sampling at run time) <- scripts; nodes/ (the node API) sits on safecfg_comfy beside
them and nothing but the pack's entry point imports it. tests/ may import anything. Every import
of every .py file counts, function-level ones included, read with `ast` (nothing is imported).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("hgr_core", "safecfg_comfy", "toyworld", "training", "benchmarks", "plugins", "scripts")  # lowest first
PROJECT = {*LAYERS, "nodes", "tests"}
HGR_CORE_THIRD_PARTY = {"torch", "einops", "safetensors"}
NODES_THIRD_PARTY = {"comfy_api", "folder_paths", "comfy"}
# Names of ComfyUI's ModelPatcher and sampling runtime; hgr_core takes tensors, never such objects.
COMFY_RUNTIME_NAMES = re.compile(r"ModelPatcher|model_options|transformer_options|set_model_\w+|get_model_object"
                                 r"|add_wrapper\w*|add_callback\w*|model_sampling|\bcomfy")
# The node API (comfy_api) lives in nodes/, the pack's entry point, and the toy world's test/demo
# node set (toyworld/comfyui_nodes/: not in the pack's node list, so not under nodes/).
COMFY_API_HOMES = ("nodes/", "__init__.py", "toyworld/comfyui_nodes/", "tests/")


def _python_files(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, absolute module name, written relatively) of every import in `path`."""
    return _parse_imports(path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix())


def _parse_imports(source: str, name: str) -> list[tuple[int, str, bool]]:
    """Imports of the file `name` (relative to the repository) whose text is `source`.

    Relative imports are resolved against the file's folder; the repository root is the pack's
    package, so `from ..hgr_core import x` in nodes/ is `hgr_core`.
    """
    package = name.split("/")[:-1]
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.lineno, node.module, False))
        elif isinstance(node, ast.ImportFrom):
            assert node.level - 1 <= len(package), f"{name}:{node.lineno}: relative import above the repository"
            base = package[:len(package) - (node.level - 1)]
            names = [node.module] if node.module else [alias.name for alias in node.names]
            found += [(node.lineno, ".".join([*base, n]), True) for n in names]
    return found


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO).as_posix()}:{line}"


def _top(module: str) -> str:
    return module.split(".")[0]


def _folder(module: str, relative: bool) -> str | None:
    """The project folder `module` is in, or None for outside code.

    An absolute `import nodes` is ComfyUI's nodes.py (ComfyUI is first on sys.path, and inside
    ComfyUI the pack's nodes/ is reachable only relatively); ComfyUI's is one file, so an absolute
    `nodes.x` can only be the pack's.
    """
    top = _top(module)
    if top not in PROJECT or (module == "nodes" and not relative):
        return None
    return top


def test_hgr_core_imports_only_torch_einops_safetensors_and_the_standard_library():
    allowed = HGR_CORE_THIRD_PARTY | set(sys.stdlib_module_names) | {"hgr_core"}
    bad = [f"{_where(p, line)} imports {module}" for p in _python_files("hgr_core")
           for line, module, _ in _imports(p) if _top(module) not in allowed]
    assert not bad, "hgr_core is plain PyTorch:\n" + "\n".join(bad)


def test_hgr_core_never_names_comfyui_runtime_objects():
    bad = [f"{_where(p, i)}: {m.group(0)!r} in {line.strip()!r}" for p in _python_files("hgr_core")
           for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
           for m in [COMFY_RUNTIME_NAMES.search(line)] if m]
    assert not bad, "hgr_core takes tensors, not ModelPatchers (move this to safecfg_comfy/):\n" + "\n".join(bad)


@pytest.mark.parametrize("folder", [*LAYERS, "nodes"])
def test_no_folder_imports_a_folder_that_depends_on_it(folder):
    """E.g. safecfg_comfy/ never imports nodes/, toyworld/, training/, benchmarks/ or scripts/."""
    if folder == "nodes":
        allowed = {"hgr_core", "safecfg_comfy", "nodes"}
    else:
        allowed = set(LAYERS[:LAYERS.index(folder) + 1])
    bad = [f"{_where(p, line)} imports {module}" for p in _python_files(folder)
           for line, module, relative in _imports(p) if _folder(module, relative) not in {None, *allowed}]
    assert not bad, f"{folder}/ may import only {sorted(allowed)}:\n" + "\n".join(bad)


def test_nodes_import_the_pack_relatively_and_only_comfyuis_node_api():
    """Inside ComfyUI `nodes` is ComfyUI's own nodes.py: the pack's folders are reachable only relatively."""
    allowed = NODES_THIRD_PARTY | set(sys.stdlib_module_names)
    bad = []
    for p in [*_python_files("nodes"), REPO / "__init__.py"]:
        for line, module, relative in _imports(p):
            if _top(module) in PROJECT and not relative:
                bad.append(f"{_where(p, line)} imports {module} absolutely; use a relative import")
            elif _top(module) not in PROJECT | allowed | {"typing_extensions"}:
                bad.append(f"{_where(p, line)} imports {module}")
    assert not bad, "\n".join(bad)


def test_comfy_api_is_imported_only_where_nodes_are_defined():
    files = [REPO / "__init__.py", *(p for folder in PROJECT for p in _python_files(folder))]
    bad = [f"{_where(p, line)} imports {module}" for p in files for line, module, _ in _imports(p)
           if _top(module) == "comfy_api" and not p.relative_to(REPO).as_posix().startswith(COMFY_API_HOMES)]
    assert not bad, "the node API belongs in nodes/:\n" + "\n".join(bad)


def test_the_import_reader_sees_function_level_and_relative_imports():
    """The rules above are only as good as `_parse_imports`: check it on the shapes the pack uses."""
    source = ("import os.path\nfrom . import sockets\nfrom ..hgr_core import load_hgr\n"
              "def f():\n    from comfy.samplers import KSampler\n")
    assert sorted(_parse_imports(source, "nodes/load_hgr.py")) == [
        (1, "os.path", False), (2, "nodes.sockets", True), (3, "hgr_core", True), (5, "comfy.samplers", False)]
    assert _parse_imports("from .world import World\n", "toyworld/comfyui_nodes/toy_nodes.py") == [
        (1, "toyworld.comfyui_nodes.world", True)]
    assert _folder("nodes", relative=False) is None  # ComfyUI's nodes.py
    assert _folder("nodes.sockets", relative=False) == _folder("nodes", relative=True) == "nodes"
