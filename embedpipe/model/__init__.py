"""Models: resolve a name or directory, export it to ONNX once, optionally optimize or quantize it.

    resolve.py        name or directory -> local directory + content hash (bundled MiniLM by default)
    export.py         optimum export into a cache keyed by content and options
    torch_export.py   a model made ready for the torch backend: tokenizer, pooler, modules, no graph
    export_layers.py  an export whose graph outputs every layer's hidden states (for classify's layers)
    recipe.py         a sentence-transformers directory -> its pooling, modules after it, prompts (ModelRecipe)
    optimize.py       onnxruntime graph optimization (O1-O3), and the export options' checks
    quantize.py       dynamic int8 by this CPU's instruction set, checked against fp32 before it is kept
    feeds.py          token id lists -> the padded input tensors an ONNX encoder graph takes
"""

from .export import ensure_exported
from .resolve import cache_root, resolve_model

__all__ = ["cache_root", "ensure_exported", "resolve_model"]
