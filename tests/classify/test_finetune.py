"""Fine-tuning heads built as transformers' classes build them: the same logits and loss as
BertForSequenceClassification / DistilBertForSequenceClassification with the same weights; the
validation rows pick the epoch; device and precision choices."""

import numpy as np
import pytest
import torch
from transformers import (
    AutoModel,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from embedpipe.classify.data import load_splits
from embedpipe.classify.finetune import (
    FinetuneOptions,
    classifier_module,
    cpu_has_native_bf16,
    finetune,
    resolve_device,
    resolve_precision,
)
from embedpipe.errors import ConfigError
from tests.classify.helpers import labeled_rows, write

LABELS = torch.tensor([0, 2, 1])


def batch():
    """Three texts of different lengths, right-padded, as the tokenizer would give them."""
    ids = torch.tensor([[2, 7, 8, 9, 10, 3], [2, 11, 3, 0, 0, 0], [2, 12, 13, 14, 3, 0]])
    return ids, (ids != 0).long()


def assert_same_logits_and_loss(ours, reference):
    """Our head's logits and cross-entropy equal the transformers class's on the same batch (1e-5)."""
    ids, mask = batch()
    expected = reference(input_ids=ids, attention_mask=mask, labels=LABELS)
    with torch.no_grad():
        logits = ours(ids, mask)
    torch.testing.assert_close(logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.nn.functional.cross_entropy(logits, LABELS), expected.loss, atol=1e-5,
                               rtol=1e-5)


def test_cls_pooler_head_is_bert_for_sequence_classification(tmp_path):
    torch.manual_seed(3)
    config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64, num_labels=3)
    reference = BertForSequenceClassification(config).eval()
    reference.save_pretrained(tmp_path)
    ours = classifier_module(AutoModel.from_pretrained(tmp_path), "cls", "pooler", 3).eval()
    assert ours.pooler_from_checkpoint   # BERT's pooler (dense + tanh) comes from the checkpoint
    ours.classifier.load_state_dict(reference.classifier.state_dict())
    assert_same_logits_and_loss(ours, reference)
    assert ours.dropout.p == config.hidden_dropout_prob


def test_cls_pre_classifier_head_is_distilbert_for_sequence_classification(tmp_path):
    torch.manual_seed(4)
    config = DistilBertConfig(vocab_size=40, dim=32, n_layers=2, n_heads=2, hidden_dim=37,
                              max_position_embeddings=64, num_labels=3)
    reference = DistilBertForSequenceClassification(config).eval()
    reference.save_pretrained(tmp_path)
    ours = classifier_module(AutoModel.from_pretrained(tmp_path), "cls", "pre_classifier", 3).eval()
    ours.pre_classifier.load_state_dict(reference.pre_classifier.state_dict())
    ours.classifier.load_state_dict(reference.classifier.state_dict())
    assert_same_logits_and_loss(ours, reference)
    assert ours.dropout.p == config.seq_classif_dropout


def test_the_other_heads_are_what_they_say(tiny_model_dir):
    encoder = AutoModel.from_pretrained(tiny_model_dir).eval()
    ids, mask = batch()
    with torch.no_grad():
        states = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        dense = encoder.pooler.dense
        linear = classifier_module(encoder, "mean", "linear", 3).eval()
        assert not hasattr(linear, "pooler") and not hasattr(linear, "pre_classifier")
        torch.testing.assert_close(linear(ids, mask), linear.classifier(mean), atol=1e-5, rtol=1e-5)
        pooled = classifier_module(AutoModel.from_pretrained(tiny_model_dir).eval(), "mean", "pooler", 3).eval()
        torch.testing.assert_close(pooled(ids, mask), pooled.classifier(torch.tanh(dense(mean))), atol=1e-5, rtol=1e-5)


def test_validation_rows_pick_the_epoch_and_the_test_is_scored_once(tiny_model_dir, tmp_path):
    train = write(tmp_path / "train.parquet", labeled_rows(10, 0))
    test = write(tmp_path / "test.parquet", labeled_rows(4, 1))
    splits = load_splits(str(train), test=str(test), test_fraction=0.2, label_column="label", text_column="text",
                         train_limit=None, seed=0)
    val = np.array([0, 10, 20, 1, 11, 21])
    run = finetune(str(tiny_model_dir), "cls", "pre_classifier", splits,
                   FinetuneOptions(epochs=3, batch_size=8, lr=1e-3, threads=1, device="cpu", precision="fp32"),
                   max_length=32, seed=0, val_rows=val)
    scores = [h["val_accuracy"] for h in run.history]
    assert len(scores) == 3 and run.best_epoch == 3 - scores[::-1].index(max(scores))   # the latest best
    assert len(run.predicted) == 12 and run.accuracy == pytest.approx(np.mean(run.predicted == splits.test.y))
    assert (run.device, run.precision) == ("cpu", "fp32")


def test_bf16_autocast_runs_and_is_recorded(tiny_model_dir, tmp_path):
    train = write(tmp_path / "train.parquet", labeled_rows(4, 0))
    splits = load_splits(str(train), test=str(train), test_fraction=0.2, label_column="label", text_column="text",
                         train_limit=None, seed=0)
    run = finetune(str(tiny_model_dir), "mean", "linear", splits,
                   FinetuneOptions(epochs=1, batch_size=4, lr=1e-3, threads=1, device="cpu", precision="bf16"),
                   max_length=32, seed=0)
    assert run.precision == "bf16" and run.best_epoch == 1 and len(run.predicted) == 12


def test_device_and_precision_choices():
    assert resolve_device("cpu").type == "cpu"
    mps = torch.backends.mps.is_available()
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device cuda is not available on this machine"):
            resolve_device("cuda")
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        FinetuneOptions(precision="fp8")
