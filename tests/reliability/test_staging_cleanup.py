"""A run refused after its staging area was made leaves nothing behind: no empty `.OUT.partial`,
no lock, no temporary file; an earlier output stays byte-identical. (Refusals before staging are
covered where their inputs are: test_max_length_limits, test_damaged_models, test_float_ids,
test_ray_address_check, test_output_completeness.)"""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedpipe.encode import encode_corpus
from embedpipe.errors import EmbedpipeError
from tests.helpers import assert_one_line_error, run_cli, snapshot
from tests.reliability.support import job, write_rows


def invalid_utf8_found_mid_run(tmp_path):
    """With empty_text=skip nothing reads the texts before encoding: RowsToVectors finds the bad row."""
    raw = pa.array([b"fine", b"also fine", b"\xc3\x28 broken"], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": raw}), tmp_path / "c.parquet")
    return ["--empty-text", "skip"], {"empty_text": "skip"}, "not valid UTF-8"


def id_type_changed_on_extend(tmp_path):
    pq.write_table(pa.table({"id": list(range(70)), "text": [f"word {i}" for i in range(70)]}),
                   tmp_path / "c.parquet")
    return [], {}, "ids already encoded"


def published_shard_gone_on_extend(tmp_path):
    first = json.loads((tmp_path / "v" / "manifest.json").read_text())["shards"][0]["file"]
    (tmp_path / "v" / first).unlink()
    write_rows(tmp_path / "c.parquet", 0, 70)
    return [], {}, "missing"


CASES = [invalid_utf8_found_mid_run, id_type_changed_on_extend, published_shard_gone_on_extend]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
@pytest.mark.parametrize("frontend", ["cli", "library"])
def test_a_refused_run_leaves_no_staging_behind(tiny_model_dir, tmp_path, case, frontend):
    corpus, out = write_rows(tmp_path / "c.parquet", 0, 60), tmp_path / "v"
    if case is not invalid_utf8_found_mid_run:
        encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=20))     # an earlier output to extend
    flags, fields, says = case(tmp_path)
    before = {k: v for k, v in snapshot(tmp_path).items() if k != "c.parquet"}
    if frontend == "cli":
        assert_one_line_error(run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", "local", "--out", out,
                                      "--rows-per-shard", 20, *flags), says)
    else:
        with pytest.raises(EmbedpipeError, match=says):
            encode_corpus(job(tiny_model_dir, corpus, out, rows_per_shard=20, **fields))
    after = {k: v for k, v in snapshot(tmp_path).items() if k != "c.parquet"}
    assert after == before, sorted(set(after) ^ set(before))
    assert not (tmp_path / ".v.partial").exists() and not (tmp_path / ".v.lock").exists()
