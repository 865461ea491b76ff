"""SafeCFGLoadHGR: pick a redirector from models/hgr."""

from __future__ import annotations

import folder_paths
from comfy_api.latest import io

from ..hgr_core import load_hgr
from .model_folder import FOLDER_NAME
from .sockets import HGRModel


class SafeCFGLoadHGR(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafeCFGLoadHGR",
            display_name="Load Harmful Guidance Redirector",
            category="sampling/safecfg",
            description="Loads HGR weights (.safetensors) from models/hgr for SafeCFG.",
            inputs=[
                io.Combo.Input(
                    "hgr_name",
                    options=folder_paths.get_filename_list(FOLDER_NAME),
                    tooltip="HGR weights in models/hgr. Train them for your checkpoint with "
                    "`python -m training.train_hgr`; an HGR only fits the model family it was trained for.",
                ),
            ],
            outputs=[HGRModel.Output(display_name="hgr")],
        )

    @classmethod
    def execute(cls, hgr_name: str) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise(FOLDER_NAME, hgr_name)
        return io.NodeOutput(load_hgr(path))
