// Shows each image's harm score and what was done with it on the SafeCFG detection and gate nodes.
// The nodes send the text as their UI output ({"text": [...]}, ui.PreviewText); this draws it in a
// read-only text box under the node's widgets, replaced on every run, never saved with the workflow.
import { app } from "../../../scripts/app.js";
import { ComfyWidgets } from "../../../scripts/widgets.js";

const NODES = ["SafeCFGGate", "SafeCFGSamplingScore", "SafeCFGDetect"];
const WIDGET = "safecfg_scores";

app.registerExtension({
  name: "SafeCFG.ShowScores",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODES.includes(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = (message?.text ?? []).join("\n");
      let widget = this.widgets?.find((w) => w.name === WIDGET);
      if (!widget) {
        widget = ComfyWidgets.STRING(this, WIDGET, ["STRING", { multiline: true }], app).widget;
        widget.inputEl.readOnly = true;
        widget.inputEl.style.opacity = 0.85;
        widget.serialize = false; // display only: not in the saved workflow's widget values
        widget.options = { ...widget.options, serialize: false }; // nor in the prompt sent to the server
      }
      widget.value = text;
      this.setDirtyCanvas(true, true);
    };
  },
});
