"""embedpipe: sentence embeddings for large corpora, FAISS search, and measurements of which pooling
and which head work best on your data.

The public API, importable from here (each name loads its stage only when first used, so
``import embedpipe`` stays light):

    >>> from embedpipe import EncodeJob, EncoderSpec, encode_corpus           # doctest: +SKIP
    >>> result = encode_corpus(EncodeJob("corpus.parquet", spec=EncoderSpec(pooling="cls")))  # doctest: +SKIP
    >>> info = build_index(result.out, "corpus.index", IndexConfig())         # doctest: +SKIP
    >>> hits = search(open_index("corpus.index"), ["a small dog"], k=5)       # doctest: +SKIP
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    "EncoderSpec": "embedpipe.encode.encoder",
    "TextEncoder": "embedpipe.encode.encoder",
    "EncodeJob": "embedpipe.encode.job",
    "EncodeResult": "embedpipe.encode.job",
    "encode_corpus": "embedpipe.encode.job",
    "open_corpus": "embedpipe.formats.corpus",
    "open_vectors": "embedpipe.formats.vectors",
    "IndexConfig": "embedpipe.index.config",
    "build_index": "embedpipe.index.build",
    "append_index": "embedpipe.index.append",
    "open_index": "embedpipe.index.load",
    "LoadedIndex": "embedpipe.index.load",
    "search": ("embedpipe.retrieval.search", "search_texts"),
    "search_file": "embedpipe.retrieval.search",
    "evaluate": "embedpipe.retrieval.evaluate",
    "EvaluateJob": "embedpipe.retrieval.evaluate",
    "ClassifyJob": "embedpipe.classify.job",
    "run_classify": "embedpipe.classify.run",
    "report_is_current": "embedpipe.classify.report",
    "predict_file": "embedpipe.classify.predict",
    "load_spec": "embedpipe.pipeline.schema",
    "run_pipeline": "embedpipe.pipeline.run",
    "errors": ("embedpipe.errors", None),
    "EmbedpipeError": "embedpipe.errors",
    "BadInput": "embedpipe.errors",
    "ConfigError": "embedpipe.errors",
    "CorruptArtifact": "embedpipe.errors",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'embedpipe' has no attribute {name!r}")
    module, attribute = _API[name] if isinstance(_API[name], tuple) else (_API[name], name)
    value = importlib.import_module(module)
    return value if attribute is None else getattr(value, attribute)


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
