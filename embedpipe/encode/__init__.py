"""Texts -> vectors: the encoder and the job that streams a corpus into a vector directory.

    pooling.py     token states -> one vector per text (one pure function per strategy)
    modules.py     the model's modules after pooling (Dense, LayerNorm, Normalize), in numpy
    batching.py    token ids -> length-sorted, budgeted onnxruntime calls
    long_texts.py  very long texts cut by characters first, the tokens the model sees unchanged
    chunking.py    long texts cut into token windows at sentence / word ends (--chunk-tokens), one row each
    devices.py     device (auto, cpu, cuda, cuda:N), backend (onnx, torch), precision: auto resolved,
                   a GPU that is not there refused in one line
    torch_session.py  the torch backend: PyTorch runs the model's safetensors where onnxruntime runs a
                   graph (SDPA, fp16/bf16, pinned copies, out-of-memory split)
    encoder.py     EncoderSpec (what defines a vector; spec_to_record / spec_from_record: it in a
                   manifest and back) and TextEncoder (onnxruntime + tokenizer: texts -> vectors)
    inflight.py    several onnxruntime calls in flight on one session (InFlight), results in order
    layers.py      PoolingGridEncoder: every (pooling, layer) vector from one pass (for classify)
    codec.py       the last step before storing: truncate_dim (Matryoshka), renormalize, cast or quantize
    rows.py        WorkerConfig and RowsToVectors: a batch of corpus rows -> (id, vector, truncated)
    pieces.py      a row range of a corpus file -> one shard + receipt (ShardWriter), written by
                   whichever worker encodes it
    runners/       who encodes the pieces: local (this process) or ray (embedpipe's own actor pool)
    resume.py      the output lock, staging, resuming a run, and the manifest that commits it
    compact.py     an encode's compact record: truncate_dim checked, int8 ranges learned, given or kept
    job.py         EncodeJob -> a published vector directory (encode_corpus)
"""

from .encoder import EncoderSpec, TextEncoder
from .job import EncodeJob, EncodeResult, encode_corpus

__all__ = ["EncodeJob", "EncodeResult", "EncoderSpec", "TextEncoder", "encode_corpus"]
