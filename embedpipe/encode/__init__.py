"""Texts -> vectors: the encoder and the job that streams a corpus into a vector directory.

    pooling.py     token states -> one vector per text (one pure function per strategy)
    modules.py     the model's modules after pooling (Dense, LayerNorm, Normalize), in numpy
    batching.py    token ids -> length-sorted, budgeted onnxruntime calls
    long_texts.py  very long texts cut by characters first, the tokens the model sees unchanged
    chunking.py    long texts cut into token windows at sentence / word ends (--chunk-tokens), one row each
    encoder.py     EncoderSpec (what defines a vector; spec_to_record / spec_from_record: it in a
                   manifest and back) and TextEncoder (onnxruntime + tokenizer: texts -> vectors)
    layers.py      PoolingGridEncoder: every (pooling, layer) vector from one pass (for classify)
    rows.py        WorkerConfig and RowsToVectors: a batch of corpus rows -> (id, vector, truncated)
    pieces.py      a row range of a corpus file -> one shard + receipt (ShardWriter), written by
                   whichever worker encodes it
    runners/       who encodes the pieces: local (this process) or ray (embedpipe's own actor pool)
    resume.py      the output lock, staging, resuming a run, and the manifest that commits it
    job.py         EncodeJob -> a published vector directory (encode_corpus)
"""

from .encoder import EncoderSpec, TextEncoder
from .job import EncodeJob, EncodeResult, encode_corpus

__all__ = ["EncodeJob", "EncodeResult", "EncoderSpec", "TextEncoder", "encode_corpus"]
