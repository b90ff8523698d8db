"""One module per on-disk contract, each with its schema, reader, writer and checks.

    columns.py     the column rules every reader shares: text and id types, missing columns, null ids
    parquet.py     a parquet footer (schema, rows); reading a small table whole

    corpus.py      the texts to encode: parquet files, directories, URLs
    vectors.py     a vector directory: (id, vector) shards + manifest.json; what defines a vector
    export_dir.py  an ONNX export: graph, tokenizer, pooler weights, export.json
    index_dir.py   an index directory: index.faiss, ids.parquet, index.json
    beir.py        retrieval evaluation files: queries, qrels, search results
    reports.py     the evaluation report a pipeline writes and reads back
    labeled.py     labeled parquet for classification
    classifier.py  a saved probe: safetensors + json, no pickle
"""
