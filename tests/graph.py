"""Run API-format graphs through ComfyUI's real executor, in-process (`from graph import Graph, run_prompt`).

What the server's `/prompt` route and prompt worker do, minus HTTP and the queue:
`execution.validate_prompt` (a failure raises GraphValidationError with ComfyUI's messages), then
`execution.PromptExecutor.execute` (inference mode, model loading, caching; a node that raises
makes GraphExecutionError, chained to the node's own exception). Needs the `comfy_nodes` fixture
(ComfyUI imported, the pack loaded); toy-world graphs also need `toy_graph`.

    g = Graph()
    model = g.node("ToyWorldModel")
    latent = g.node("KSampler", model=model, positive=g.node("ToyWorldTextEncode", text="a red circle"),
                    negative=g.node("ToyWorldTextEncode", text=""), latent_image=g.node("EmptyLatentImage",
                    width=64, height=64, batch_size=1), seed=0, steps=4, cfg=5.0, sampler_name="euler",
                    scheduler="normal", denoise=1.0)
    g.node("PreviewImage", images=g.node("ToyWorldVAEDecode", samples=latent))
    run = g.run()
    run.output(latent)["samples"]      # any executed node's output, not only output nodes'

The executor talks to a server object; `RecordingServer` is a minimal stand-in (client_id None,
as for a prompt posted without one) that records what the executor would send the browser. The
executor's own status messages (execution_start/cached/error/success) come back in
`GraphRun.messages`. Inside `asyncio` code (a running event loop) call the executor yourself:
this module uses `asyncio.run`, as the executor does. Nodes that reach for
`server.PromptServer.instance` themselves (a few comfy_extras image nodes' progress text) are not
supported in-process; the real-server tests cover them. comfy_extras nodes (SamplerCustomAdvanced,
the guiders) are registered only if a test loads them: `nodes.init_extra_nodes` is not called here.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple


class GraphError(RuntimeError):
    """A graph that ComfyUI refused to validate or failed to execute."""


class GraphValidationError(GraphError):
    """`execution.validate_prompt` rejected the graph; `error` and `node_errors` are its own dicts."""

    def __init__(self, error: dict | None, node_errors: dict):
        self.error = error
        self.node_errors = node_errors
        lines = [f"{error['message']}: {error['details']}".rstrip(": ")] if error else []
        for node_id, info in node_errors.items():
            for reason in info["errors"]:
                lines.append(f"{info['class_type']} #{node_id}: {reason['message']}: {reason['details']}")
        super().__init__("ComfyUI refused the prompt:\n" + "\n".join(lines))


class GraphExecutionError(GraphError):
    """A node raised while the executor ran it; the node's exception is `__cause__`."""

    def __init__(self, message: dict):
        self.node_id = message["node_id"]
        self.node_type = message["node_type"]
        self.exception_type = message["exception_type"]
        self.exception_message = message["exception_message"].strip()
        super().__init__(f"{self.node_type} #{self.node_id} raised {self.exception_type}: {self.exception_message}")


class Ref(NamedTuple):
    """A link to output `slot` of node `node_id`; stored in the prompt as ComfyUI's ["id", slot]."""

    node_id: str
    slot: int = 0

    def out(self, slot: int) -> Ref:
        return Ref(self.node_id, slot)


@dataclass
class GraphRun:
    """What one execution produced."""

    prompt_id: str
    outputs: dict[str, tuple]  # node id -> its output values, one per output slot (executed nodes only)
    ui: dict[str, dict]  # output node id -> its UI result, as in /history (e.g. {"images": [...]})
    messages: list[tuple[str, dict]] = field(default_factory=list)  # the executor's status messages

    def output(self, ref: Ref | str, slot: int = 0) -> Any:
        """One output value: `run.output(ref)` for a Ref, or `run.output("3", 0)` by node id."""
        node_id, slot = (ref.node_id, ref.slot) if isinstance(ref, Ref) else (str(ref), slot)
        if node_id not in self.outputs:
            raise KeyError(f"node {node_id} did not execute in this run (executed: {sorted(self.outputs)})")
        return self.outputs[node_id][slot]


class Graph:
    """An API-format prompt built node by node; node ids are "1", "2", ... in creation order."""

    def __init__(self):
        self.prompt: dict[str, dict] = {}

    def node(self, class_type: str, /, **inputs) -> Ref:
        """Add a node; Ref inputs become links, anything else a widget value. Returns output 0."""
        node_id = str(len(self.prompt) + 1)
        self.prompt[node_id] = {
            "class_type": class_type,
            "inputs": {k: [v.node_id, v.slot] if isinstance(v, Ref) else v for k, v in inputs.items()},
        }
        return Ref(node_id)

    def run(self, outputs: list[str | Ref] | None = None, extra_data: dict | None = None) -> GraphRun:
        """`run_prompt` on this graph."""
        return run_prompt(self.prompt, outputs, extra_data)


class RecordingServer:
    """The attributes and methods of `server.PromptServer` that the executor uses, recording messages."""

    def __init__(self):
        self.client_id = None  # no browser: the executor then sends only broadcast messages
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.messages: list[tuple[str, Any]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


class GraphRunner:
    """One executor kept across prompts, with its caches, as the server keeps its prompt worker's."""

    def __init__(self):
        import execution
        from comfy.cli_args import args

        self.server = RecordingServer()
        self.executor = _executor_class()(self.server, cache_type=execution.CacheType.CLASSIC,
                                          cache_args={"lru": args.cache_lru, "ram": args.cache_ram})

    def run(self, prompt: dict, outputs: list[str | Ref] | None = None, extra_data: dict | None = None) -> GraphRun:
        """Validate and execute `prompt`; `outputs` limits which output nodes run (ids or Refs)."""
        import execution

        # ComfyUI stores each node's input fingerprint inside the prompt dict it executes: running
        # the same dict twice would freeze it (a retrained file would never be reloaded). Copy.
        prompt = copy.deepcopy(prompt)
        prompt_id = str(uuid.uuid4())
        targets = None if outputs is None else [o.node_id if isinstance(o, Ref) else str(o) for o in outputs]
        valid, error, good_outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, targets))
        if not valid or node_errors:  # the server runs the valid outputs anyway; a test wants to know
            raise GraphValidationError(error, node_errors)
        self.server.last_prompt_id = prompt_id
        self.executor.last_exception = None
        self.executor.execute(prompt, prompt_id, dict(extra_data or {}), good_outputs)
        if not self.executor.success:
            cause = self.executor.last_exception
            failure = next((data for event, data in self.executor.status_messages if event == "execution_error"), None)
            if failure is None:  # interrupted: no error message, only the exception
                raise GraphError(f"execution stopped: {cause!r}") from cause
            raise GraphExecutionError(failure) from cause
        return GraphRun(prompt_id, self._outputs(prompt), self.executor.history_result["outputs"],
                        list(self.executor.status_messages))

    def _outputs(self, prompt: dict) -> dict[str, tuple]:
        import nodes

        result = {}
        for node_id, node in prompt.items():
            entry = self.executor.caches.outputs.get(node_id)
            if entry is None:
                continue
            is_list = getattr(nodes.NODE_CLASS_MAPPINGS[node["class_type"]], "OUTPUT_IS_LIST", None) or ()
            # The executor stores a list of values per output slot (list expansion); unwrap the usual one.
            result[node_id] = tuple(
                values[0] if len(values) == 1 and not (i < len(is_list) and is_list[i]) else values
                for i, values in enumerate(entry.outputs)
            )
        return result


def run_prompt(prompt: dict, outputs: list[str | Ref] | None = None, extra_data: dict | None = None) -> GraphRun:
    """Validate and execute an API-format prompt on a fresh executor (no cache from earlier runs)."""
    return GraphRunner().run(prompt, outputs, extra_data)


def install_hgr(source, name: str | None = None) -> str:
    """Put an HGR (a .safetensors path, or an `hgr_core.HGR` object) in models/hgr; returns the file
    name to give SafeCFGLoadHGR's `hgr_name`. Overwrites a file of that name."""
    import folder_paths

    folder = Path(folder_paths.get_folder_paths("hgr")[0])
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(source, (str, Path)):
        name = name or Path(source).name
        shutil.copyfile(source, folder / name)
    else:
        from hgr_core import save_hgr

        if name is None:
            raise ValueError("install_hgr needs a file name for an in-memory HGR")
        save_hgr(source, folder / name)
    return name


def toy_txt2img(positive: str = "a red circle on white", negative: str = "", *, seed: int = 0, steps: int = 4,
                cfg: float = 5.0, batch_size: int = 1, sampler_name: str = "euler", scheduler: str = "normal",
                model: Ref | None = None, graph: Graph | None = None) -> tuple[Graph, Ref, Ref]:
    """The toy world's txt2img graph (model -> KSampler -> decode -> PreviewImage).

    model: a Ref to use instead of ToyWorldModel (e.g. a SafeCFGApply node of the same graph).
    Returns (graph, sampler latent ref, decoded image ref).
    """
    g = graph or Graph()
    model = model or g.node("ToyWorldModel")
    latent = g.node(
        "KSampler", model=model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
        positive=g.node("ToyWorldTextEncode", text=positive), negative=g.node("ToyWorldTextEncode", text=negative),
        latent_image=g.node("EmptyLatentImage", width=64, height=64, batch_size=batch_size), denoise=1.0,
    )
    image = g.node("ToyWorldVAEDecode", samples=latent)
    g.node("PreviewImage", images=image)
    return g, latent, image


@functools.cache
def _executor_class():
    """PromptExecutor that also keeps the failing node's exception (the real one keeps only its text).

    Built on first use: `execution` is importable only once the comfy_nodes fixture set ComfyUI up.
    """
    import execution

    class Executor(execution.PromptExecutor):
        last_exception = None

        def handle_execution_error(self, prompt_id, prompt, current_outputs, executed, error, ex):
            self.last_exception = ex
            super().handle_execution_error(prompt_id, prompt, current_outputs, executed, error, ex)

    return Executor
