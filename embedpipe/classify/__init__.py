"""`embedpipe classify`: linear / MLP probes on frozen pooled vectors against full fine-tuning.

    >>> from embedpipe.classify import ClassifyJob, run_classify  # doctest: +SKIP
    >>> report = run_classify(ClassifyJob(train="train.parquet", test="test.parquet",  # doctest: +SKIP
    ...                                   out="report_dir"))

Modules, one job each: data (labeled parquet, checks, splits), features (cached frozen vectors),
probes (linear / mlp heads), finetune (the whole encoder), report (json, md, png), saved / predict
(a probe on disk without pickle, and applying it).
"""

from .job import ClassifyJob, report_is_current, run_classify
from .predict import predict_file

__all__ = ["ClassifyJob", "run_classify", "report_is_current", "predict_file"]
