"""embedpipe: sentence embeddings for large parquet corpora, FAISS search, and measurements of
which pooling and which head work best on your data."""

__version__ = "0.1.0"
