"""Properties of the corpus reader (hypothesis): every row once and in order whatever the row groups and
batch sizes, blank rows counted as the encoder refuses them, duplicate ids and invalid UTF-8 found exactly."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedpipe.errors import EmbedpipeError
from embedpipe.formats.corpus import check_utf8, open_corpus

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
texts = st.one_of(st.none(), st.text(max_size=40))            # any Unicode (no lone surrogates: not encodable)
rows = st.lists(texts, max_size=60)


@FAST
@given(rows=rows, row_group=st.integers(1, 70), batch=st.integers(1, 70), string_ids=st.booleans())
def test_reader_yields_every_row_once_in_order(tmp_path_factory, rows, row_group, batch, string_ids):
    path = tmp_path_factory.mktemp("prop") / "c.parquet"
    ids = [f"id-{i}" for i in range(len(rows))] if string_ids else list(range(len(rows)))
    pq.write_table(pa.table({"id": pa.array(ids, pa.string() if string_ids else pa.int64()),
                             "text": pa.array(rows, pa.string())}), path, row_group_size=row_group)
    corpus = open_corpus(str(path))
    got_ids, got_texts = [], []
    for record_batch in corpus.iter_batches(batch):
        assert record_batch.num_rows <= batch
        got_ids += record_batch.column(0).to_pylist()
        got_texts += record_batch.column(1).to_pylist()
    assert (got_ids, got_texts) == (ids, rows) and corpus.rows == len(rows)
    corpus.check_unique_ids()                                   # unique ids: no error
    blank, _ = corpus.find_bad_rows(batch_rows=batch)
    # What the encoder would refuse (None, or nothing left after Python's strip) is what the reader flags.
    assert blank == sum(t is None or not t.strip() for t in rows)


@FAST
@given(ids=st.lists(st.one_of(st.integers(-5, 5), st.integers(-2**63, 2**63 - 1)), min_size=1, max_size=80))
def test_duplicate_ids_are_found_exactly(tmp_path_factory, ids):
    path = tmp_path_factory.mktemp("dup") / "c.parquet"
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "text": ["t"] * len(ids)}), path, row_group_size=7)
    repeated = {i for i in ids if ids.count(i) > 1}
    if repeated:
        with pytest.raises(EmbedpipeError, match=f"{len(repeated)} id\\(s\\) occur more than once"):
            open_corpus(str(path)).check_unique_ids(batch_rows=5)
    else:
        assert len(open_corpus(str(path)).check_unique_ids(batch_rows=5)) == len(ids)


@FAST
@given(good=st.lists(st.text(max_size=10), max_size=10), bad=st.lists(st.binary(min_size=1, max_size=8), max_size=5))
def test_invalid_utf8_is_named_by_id(good, bad):
    bad = [b for b in bad if not _decodes(b)]
    values = [t.encode() for t in good] + bad
    ids = pa.array(range(len(values)))
    texts = pa.array(values, pa.binary()).view(pa.string())
    if bad:
        with pytest.raises(EmbedpipeError,
                           match=f"{len(bad)} row\\(s\\) hold text that is not valid UTF-8 \\(ids: {len(good)}"):
            check_utf8(ids, texts)
    else:
        check_utf8(ids, texts)


def _decodes(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
