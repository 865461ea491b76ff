"""pyproject.toml carries what the Comfy registry and ComfyUI-Manager read about the pack."""

import tomllib

from helpers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_declares_the_minimum_comfyui_version():
    assert PYPROJECT["tool"]["comfy"]["requires-comfyui"] == ">=0.3.75"  # the version the tests run


def test_declares_the_repository_url():
    assert PYPROJECT["project"]["urls"]["Repository"].startswith("https://github.com/")
