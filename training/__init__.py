"""Training CLIs: `python -m training.train_hgr` (HGR weights for any ComfyUI checkpoint)."""
