"""Retrieval over an index directory.

    search.py    text queries -> hits (one text, or a queries file -> results parquet)
    evaluate.py  nDCG@10 / Recall@k / MRR@k on BEIR-style queries and qrels, next to exact search
    metrics.py   the metrics, computed as BEIR and MTEB compute them
    compare.py   several indexes (precisions, dims) side by side: quality, bytes per vector, queries/s
    documents.py  an index of chunks searched by document (best chunk, or the sum of the top chunks)
"""

from .evaluate import EvaluateJob, evaluate, run_evaluate
from .search import Hit, search_file, search_texts

__all__ = ["EvaluateJob", "Hit", "evaluate", "run_evaluate", "search_file", "search_texts"]
