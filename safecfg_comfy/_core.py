"""`hgr_core` as seen from this package, whichever way the package was imported.

Inside ComfyUI the pack is a package (`custom_nodes/<pack>/`), so `hgr_core` is its sibling
subpackage; the command-line tools and tests import `safecfg_comfy` and `hgr_core` as top-level
packages. This is the one place that knows about both.
"""

try:
    from .. import hgr_core  # noqa: F401  (inside ComfyUI: custom_nodes/<pack>/hgr_core)
except ImportError:  # top-level import: python -m training..., benchmarks, tests
    import hgr_core  # noqa: F401
