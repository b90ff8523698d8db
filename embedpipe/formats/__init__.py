"""One module per on-disk contract, each with its schema, reader, writer and checks.

    readers/       one reader per file format (parquet, JSON Lines, CSV, Arrow) chosen by name, and
                   what a location holds (a file, directory, glob, save_to_disk dir, BEIR folder)
    columns.py     the column rules every reader shares: text and id types, missing columns, null ids
    table.py       a small table (queries, qrels, labeled data) read whole through those rules

    corpus.py      the texts to encode, opened in one pass and streamed as (id, text) batches
    codes.py       compact vector codes (int8/uint8 per-dimension ranges, sign bits) and reading them as floats
    vectors.py     a vector directory: (id, vector) shards + manifest.json; what defines a vector
    export_dir.py  an ONNX export: graph, tokenizer, pooler weights, export.json and its model recipe
    index_dir.py   an index directory: index.faiss, ids.parquet, index.json
    index_ids.py   ids.arrow: the index's ids memory-mapped, read only for the rows a search returns
    index_spans.py  spans.arrow: over chunks, each index row's typed doc id and span, memory-mapped
    ivfdata.py     index.ivfdata: an index's inverted lists on disk, found beside index.faiss, size-checked
    beir.py        retrieval evaluation files: queries, qrels, search results
    reports.py     the evaluation report a pipeline writes and reads back; MTEB JSON, TREC run files
    labeled.py     labeled parquet for classification
    classifier.py  a saved probe: safetensors + json, no pickle

Where files live (paths, URLs, object stores) is the storage package's business, below this one.
"""
