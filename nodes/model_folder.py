"""Register ComfyUI's `models/hgr` folder without clobbering a user's extra_model_paths.yaml."""

from __future__ import annotations

import os

import folder_paths

FOLDER_NAME = "hgr"
EXTENSIONS = {".safetensors"}  # weights are .safetensors only: nothing is ever unpickled


def register_hgr_folder() -> list[str]:
    """Keep paths a user registered for "hgr" (IPAdapter convention), else use <models>/hgr."""
    if FOLDER_NAME in folder_paths.folder_names_and_paths:
        paths = list(folder_paths.folder_names_and_paths[FOLDER_NAME][0])
    else:
        paths = [os.path.join(folder_paths.models_dir, FOLDER_NAME)]
    folder_paths.folder_names_and_paths[FOLDER_NAME] = (paths, EXTENSIONS)
    return paths
