"""An id column of floats with NaN or null (what pandas writes for an int column with gaps) is refused
naming the first row without an id, from the CLI and the library, and nothing is written."""

import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import EncodeJob, encode_corpus
from embedpipe.encode.encoder import EncoderSpec
from embedpipe.errors import EmbedpipeError
from tests.helpers import assert_one_line_error, run_cli, snapshot


@pytest.mark.parametrize("write", ["pandas-gap", "float32-nan", "float64-nan-late"])
def test_float_ids_are_refused_naming_the_first_row_without_an_id(tiny_model_dir, tmp_path, write):
    path = tmp_path / "c.parquet"
    if write == "pandas-gap":
        pd.DataFrame({"id": [1, 2, None, 4], "text": ["a", "b", "c", "d"]}).to_parquet(path)
        row, what = 2, "null"
    elif write == "float32-nan":
        pq.write_table(pa.table({"id": pa.array([1.0, float("nan"), 3.0], pa.float32()), "text": ["a", "b", "c"]}),
                       path)
        row, what = 1, "NaN"
    else:
        ids = [float(i) for i in range(50)] + [float("nan")]
        pq.write_table(pa.table({"id": ids, "text": [f"t{i}" for i in range(51)]}), path)
        row, what = 50, "NaN"
    before = snapshot(tmp_path)
    assert_one_line_error(run_cli("encode", path, "--model", tiny_model_dir, "--runner", "local", "--out",
                                  tmp_path / "v"), "id column 'id' holds", f"row {row} is {what}")
    with pytest.raises(EmbedpipeError, match=f"row {row} is {what}"):
        encode_corpus(EncodeJob(str(path), out=str(tmp_path / "v"), spec=EncoderSpec(model=str(tiny_model_dir)),
                                runner="local"))
    assert snapshot(tmp_path) == before
    assert os.listdir(tmp_path) == ["c.parquet"]
