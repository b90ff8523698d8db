"""Texts -> vectors: the encoder and the job that streams a corpus into a vector directory.

    pooling.py   token states -> one vector per text (one pure function per strategy)
    batching.py  token ids -> length-sorted, budgeted onnxruntime calls
    encoder.py   EncoderSpec (what defines a vector) and TextEncoder (onnxruntime + tokenizer)
    mapper.py    a batch of corpus rows -> (id, vector, truncated), the unit runners map
    runners/     local (this process) and ray (an actor pool on Ray Data)
    resume.py    staging, locking and resuming a run
    job.py       EncodeJob -> a published vector directory
"""

from .encoder import EncoderSpec, TextEncoder
from .job import EncodeJob, EncodeResult, encode_corpus

__all__ = ["EncodeJob", "EncodeResult", "EncoderSpec", "TextEncoder", "encode_corpus"]
