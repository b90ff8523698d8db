"""--max-length beyond the model's positions is refused before any runner starts (one `Error:` line
naming the limit, an EmbedpipeError from Python, nothing written); at the limit, long texts are
truncated and counted."""

import pytest

from embedpipe.encode import encode_corpus
from embedpipe.encode.encoder import EncoderSpec, TextEncoder
from embedpipe.errors import EmbedpipeError
from tests.helpers import assert_one_line_error, run_cli, snapshot, write_corpus
from tests.reliability.support import job


@pytest.mark.parametrize("runner", ["local", "ray"])
@pytest.mark.parametrize("max_length", [65, 512, 100_000])
def test_max_length_beyond_the_models_positions_is_refused_before_any_runner(tiny_model_dir, tmp_path, runner,
                                                                             max_length):
    corpus = write_corpus(tmp_path / "c.parquet")
    before = snapshot(tmp_path)
    line = assert_one_line_error(run_cli("encode", corpus, "--model", tiny_model_dir, "--runner", runner,
                                         "--max-length", max_length, "--out", tmp_path / "v"),
                                 f"--max-length {max_length}", "64 tokens", "--max-length 64 or less")
    assert "Ray" not in line
    with pytest.raises(EmbedpipeError, match=f"max_length {max_length} is more than"):
        encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v", runner=runner,
                          spec=EncoderSpec(model=str(tiny_model_dir), max_length=max_length)))
    with pytest.raises(EmbedpipeError, match="positions for \\(64 tokens\\)"):
        TextEncoder.load(EncoderSpec(model=str(tiny_model_dir), max_length=max_length))
    assert snapshot(tmp_path) == before


def test_max_length_at_the_models_limit_encodes_long_texts(tiny_model_dir, tmp_path):
    corpus = write_corpus(tmp_path / "c.parquet", ["word " * 500, "a cat"])
    result = encode_corpus(job(tiny_model_dir, corpus, tmp_path / "v",
                               spec=EncoderSpec(model=str(tiny_model_dir), max_length=64)))
    assert result.manifest["rows"] == 2 and result.manifest["truncated_rows"] == 1
