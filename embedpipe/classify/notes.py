"""The notes under report.md's table: how each method of a job was trained, in words.

    >>> method_notes(ClassifyJob(train="t.parquet", heads=["linear"]), last=6)[1]
    'linear: scikit-learn LogisticRegression (lbfgs, C=1); deterministic, so one run'

They are made from the job's config alone (not from results), so a report states what was asked for.
"""

from __future__ import annotations

from .job import ClassifyJob


def method_notes(job: ClassifyJob, last: int) -> list[str]:
    """How each method of ``job`` was trained, one sentence each, for report.json's ``notes`` (report.md
    lists them under the table): heads=("linear",) -> [..., "linear: scikit-learn LogisticRegression ..."]."""
    notes = []
    if job.val_fraction and not job.samples_per_label:
        notes.append(f"validation: {job.val_fraction:.0%} of the training rows (stratified) are held out to pick "
                     "the epoch of the mlp and attention heads and of fine-tuning; every method trains on the "
                     "rest; the test rows are scored once")
    if "linear" in job.heads:
        notes.append("linear: scikit-learn LogisticRegression (lbfgs, C=1); deterministic, so one run"
                     if not job.samples_per_label else
                     f"MTEB mode: {job.seeds} experiments of {job.samples_per_label} training rows per label, "
                     "sampled as MTEB does; LogisticRegression(max_iter=100, random_state=42)")
    if "mlp" in job.heads:
        notes.append(f"mlp: Linear(dim,dim)+ReLU+dropout 0.2+Linear (DistilBERT's head), AdamW 1e-3, "
                     f"at most {job.mlp_epochs} epochs (patience {job.patience}), seeds 0..{job.seeds - 1}")
    if "attention" in job.heads:
        notes.append(f"attention: a learned query over the last layer's frozen token states (float16 cache), "
                     f"then the mlp head; trained like the mlp, seeds 0..{job.seeds - 1}")
    if job.layers != "last":
        notes.append(f"layers: hidden state 0 is the embeddings, {last} the last layer; every pooling x layer "
                     "came from one encoder pass" + ("; pooler only at the last layer (BERT's pooler reads it)"
                                                     if "pooler" in job.poolings else ""))
    if job.chunk_tokens is not None:
        notes.append(f"documents: each text cut into windows of {job.chunk_tokens} tokens ({job.chunk_overlap} "
                     "shared); POOLING+chunks is the mean of a text's chunk vectors, POOLING+first its first "
                     "chunk alone (the truncation baseline at that window), at the last layer")
    if job.finetune:
        notes.append(f"fine-tuning: whole encoder, AdamW lr {job.learning_rate}, up to {job.epochs} epoch(s) "
                     f"(the best on the validation rows kept), batch {job.finetune_batch_size}, 10% linear warmup"
                     + (f"; on a stratified sample of {job.finetune_train_limit} training rows"
                        if job.finetune_train_limit else ""))
    notes.append("statistics: each method against the best, paired bootstrap (2000 resamples of the test rows) "
                 "95% CI of the accuracy difference over the seeds' mean, and McNemar's exact p on the first seed")
    return notes
