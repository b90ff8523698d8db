"""`embedpipe classify`: linear / MLP / attention probes on frozen pooled vectors against full fine-tuning.

    >>> from embedpipe.classify import ClassifyJob, run_classify  # doctest: +SKIP
    >>> report = run_classify(ClassifyJob(train="train.parquet", test="test.parquet",  # doctest: +SKIP
    ...                                   out="report_dir"))

Modules, one job each:

    job.py        ClassifyJob: what to compare on which data, checked when built
    run.py        run_classify: the loop over layers x poolings x heads x seeds, and fine-tuning
    data.py       labeled parquet -> checked train / validation / test splits
    features.py   frozen pooled vectors (and token states), encoded once per job and cached
    compact.py    those vectors as a compact output holds them (int8 codes, sign bits, truncate_dim)
    documents.py  document vectors from chunks (--chunk-tokens): the chunks' mean, the first chunk alone
    probes.py     linear and mlp heads on frozen vectors (MTEB's sampling in MTEB mode)
    attention.py  the attention-pooling head over frozen token states
    finetune.py   fine-tuning the whole encoder with a pooler / pre_classifier / linear head
    stats.py      paired bootstrap and McNemar's test
    verdict.py    every method against the best, and the verdict sentences
    notes.py      how each method was trained, in words
    report.py     the report directory (json, md, png, predictions) and whether it is current
    predict.py    a saved probe (formats/classifier.py) applied to a parquet file
    merge.py      reports made on the same test rows merged into one (`embedpipe classify-merge`)
"""

from .job import ClassifyJob
from .predict import predict_file
from .report import report_is_current
from .run import run_classify

__all__ = ["ClassifyJob", "run_classify", "report_is_current", "predict_file"]
