"""Texts -> vectors: the encoder and the job that streams a corpus into a vector directory.

    pooling.py   token states -> one vector per text (one pure function per strategy)
    batching.py  token ids -> length-sorted, budgeted onnxruntime calls
    encoder.py   EncoderSpec (what defines a vector) and TextEncoder (onnxruntime + tokenizer)
    mapper.py    a batch of corpus rows -> (id, vector, truncated), the unit runners map
    pieces.py    a row range of a corpus file -> one shard + receipt, written by whoever encodes it
    runners/     local (this process) and ray (an actor pool sized per node, replacing lost actors)
    resume.py    staging, locking, resuming a run, and the manifest that commits it
    job.py       EncodeJob -> a published vector directory
"""

from .encoder import EncoderSpec, TextEncoder
from .job import EncodeJob, EncodeResult, encode_corpus

__all__ = ["EncodeJob", "EncodeResult", "EncoderSpec", "TextEncoder", "encode_corpus"]
