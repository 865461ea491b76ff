"""SafeCFGLoadHGR: pick a redirector from models/hgr."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..hgr_core import load_hgr
from .model_folder import FOLDER_NAME
from .sockets import CATEGORY, DISPLAY_PREFIX, HGRModel


def file_fingerprint(path: str) -> tuple[int, int, int]:
    """(mtime in ns, size, inode): changes when a file is retrained or re-exported under the same name.

    The inode is there because an atomic export (temp file + rename, as save_hgr does) makes a new
    one, and coarse file-system clocks can give two writes within a few ms the same mtime.
    """
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class SafeCFGLoadHGR(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafeCFGLoadHGR",
            display_name=f"{DISPLAY_PREFIX}Load HGR",
            category=CATEGORY,
            description="Loads Harmful Guidance Redirector weights (.safetensors) from models/hgr for SafeCFG.",
            inputs=[
                io.Combo.Input(
                    "hgr_name",
                    options=folder_paths.get_filename_list(FOLDER_NAME),
                    tooltip="HGR weights in models/hgr. Train them for your checkpoint with "
                    "`python -m training.train_hgr`; an HGR only fits the model family it was trained for.",
                ),
            ],
            outputs=[HGRModel.Output(display_name="hgr",
                                     tooltip="The loaded redirector; connect it to SafeCFG: Apply (and HGR Info).")],
        )

    @classmethod
    def fingerprint_inputs(cls, hgr_name: str):
        # ComfyUI reuses the cached output while this value stays the same (V1: IS_CHANGED).
        path = folder_paths.get_full_path(FOLDER_NAME, hgr_name)
        if path is None or not os.path.isfile(path):
            return hgr_name  # execute() raises the "not found" error
        return hgr_name, *file_fingerprint(path)

    @classmethod
    def execute(cls, hgr_name: str) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise(FOLDER_NAME, hgr_name)
        return io.NodeOutput(load_hgr(path))
