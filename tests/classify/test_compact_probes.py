"""Probes on compact vectors: int8 codes and sign bits read back as floats, ranges from training rows only."""

import json

import numpy as np
import pytest

from embedpipe.classify import ClassifyJob, run_classify
from embedpipe.classify.compact import stored_like
from embedpipe.errors import ConfigError
from embedpipe.formats.codes import quantize, ranges_of
from tests.classify.helpers import labeled_rows, write


def test_int8_ranges_come_from_the_training_rows_only():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(50, 16)).astype(np.float32), 10 * rng.normal(size=(5, 16)).astype(np.float32)
    fit = np.arange(40)
    x_train, x_test = stored_like("int8", None, False, train, test, fit)
    ranges = ranges_of(train[fit])
    half_step = (ranges[1] - ranges[0]) / 255 / 2 + 1e-6      # codes read back as the middle of their step
    assert (x_test >= ranges[0] - half_step).all() and (x_test <= ranges[1] + half_step).all()   # clipped
    np.testing.assert_array_equal(quantize(x_train, "int8", ranges), quantize(train, "int8", ranges))


def test_a_probe_learns_from_sign_bits_of_truncated_vectors(tiny_model_dir, tmp_path):
    train = write(tmp_path / "train.parquet", labeled_rows(15, 0))
    test = write(tmp_path / "test.parquet", labeled_rows(8, 1))
    report = run_classify(ClassifyJob(train=str(train), test=str(test), model=str(tiny_model_dir), poolings=("mean",),
                                      heads=("linear",), vector_dtype="binary", truncate_dim=16,
                                      out=str(tmp_path / "r")))
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert saved["config"]["vector_dtype"] == "binary" and saved["config"]["truncate_dim"] == 16
    assert report["results"][0]["accuracy"] > 1 / 3   # three classes: better than chance from 16 bits


def test_a_compact_probe_is_not_saved_as_a_float_one():
    with pytest.raises(ConfigError, match="save_model"):
        ClassifyJob(train="t.parquet", vector_dtype="int8", save_model="probe")
