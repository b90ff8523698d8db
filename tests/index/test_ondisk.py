"""Inverted lists on disk (index/ondisk.py): built from the same trained index and parts they find what
the in-RAM merge finds; the index opens memory-mapped with only its quantizers in RAM; the directory
moves and makes the s3:// round trip with its index.ivfdata; a missing or truncated file, an append
and a fast-scan factory that cannot be on disk are each refused in one line; FAISS's prints stay out
of standard output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import faiss
import numpy as np
import pytest

from embedpipe.errors import BadInput, CorruptArtifact
from embedpipe.formats.ivfdata import IVFDATA_FILE
from embedpipe.formats.vectors import open_vectors
from embedpipe.index import IndexConfig, build_index, open_index
from embedpipe.index.append import append_index
from embedpipe.index.factory import ivf_of, make_index
from embedpipe.index.ondisk import WithoutRows, plan_lists
from embedpipe.index.parallel import fill_in_parallel, in_this_process
from embedpipe.testing.services import s3_server
from tests.helpers import assert_one_line_error, run_cli
from tests.index.clustered import clustered_unit_vectors, write_vectors

PLAIN = "IVF32,PQ24x4np"        # what an on-disk index of IVF32,PQ24x4fs holds
TINY = "40KB"                   # below the 6,000 vectors' 120 KB of lists: they go on disk


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    x = clustered_unit_vectors(6_000, seed=7)
    return write_vectors(tmp_path_factory.mktemp("od") / "c.vectors", x, rows_per_shard=1_000), x


@pytest.fixture(scope="module")
def on_disk(vectors, tmp_path_factory):
    """An index built through --max-memory below its lists (the local runner: parts in this process)."""
    out = tmp_path_factory.mktemp("odi") / "od.index"
    info = build_index(vectors[0], out, IndexConfig(factory="IVF32,PQ24x4fs,RFlat", max_memory=TINY,
                                                    tuning_queries=200))
    return out, info


def test_the_on_disk_merge_finds_what_the_in_ram_merge_finds(vectors, tmp_path):
    path, x = vectors
    config = IndexConfig(factory=PLAIN, tuning_queries=200)
    build = tmp_path / "build"
    ram = fill_in_parallel(open_vectors(path), make_index(PLAIN, 24, "ip"), PLAIN, config, build, None,
                           in_this_process, tmp_path)
    disk = fill_in_parallel(open_vectors(path), make_index(PLAIN, 24, "ip"), PLAIN, config, build, None,
                            in_this_process, tmp_path, on_disk=True)
    assert disk.reused == 6 and disk.queries_added and not ram.queries_added   # the same trained index, parts
    assert isinstance(faiss.downcast_InvertedLists(ivf_of(disk.index).invlists), faiss.OnDiskInvertedLists)
    queries, kept = ram.samples.queries, ram.index.ntotal
    assert disk.index.ntotal == kept + len(queries)
    ivf_of(ram.index).nprobe = ivf_of(disk.index).nprobe = 8
    unseen = clustered_unit_vectors(6_300, seed=7)[6_000:]   # points of the same clusters not indexed
    # while tuning, the on-disk index (which holds the queries already) answers as the in-RAM one without them
    for probe in (queries, unseen):
        d1, i1 = ram.index.search(probe, 10)
        d2, i2 = WithoutRows(disk.index, kept).search(probe, 10)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(d1, d2)
    # once the queries join the in-RAM index too, both hold the same entries under the same labels
    ram.index.add(queries)
    for probe in (queries, unseen):
        np.testing.assert_array_equal(ram.index.search(probe, 10)[1], disk.index.search(probe, 10)[1])


def test_an_index_over_the_budget_keeps_its_lists_on_disk_and_maps_them(on_disk, vectors):
    out, info = on_disk
    lists = info["inverted_lists"]
    assert lists["on"] == "disk" and lists["file"] == IVFDATA_FILE and "exceed max_memory" in lists["reason"]
    assert info["factory"] == PLAIN and "plain IVF-PQ" in lists["reason"]      # fast-scan lists cannot be on disk
    assert info["refine"]["from"] == "exact_store"                             # nor can the floats be in RAM
    assert lists["bytes"] == (out / IVFDATA_FILE).stat().st_size == 6_000 * (12 + 8)   # each list at its size
    # what search holds in RAM is index.faiss: centroids, PQ tables, where each list lies (not the lists)
    assert info["memory_bytes"] == (out / "index.faiss").stat().st_size < lists["bytes"] / 10
    loaded = open_index(out)
    held = faiss.downcast_InvertedLists(ivf_of(loaded.index).invlists)
    assert isinstance(held, faiss.OnDiskInvertedLists) and held.read_only      # mapped, not read
    assert held.filename.startswith("/proc/self/fd/")   # through the directory handle of one published version
    # its recall on unseen points is what tuning measured, give or take the sample
    x = vectors[1]
    unseen = clustered_unit_vectors(6_300, seed=7)[6_000:]
    truth = np.argsort(-(unseen @ x.T), axis=1)[:, :10]
    _, rows = loaded.search(unseen, 10)
    found = [[int(i[3:]) for i in loaded.ids_of(r)] for r in rows]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert info["recall_reached"] and recall >= 0.9, (recall, info["recall_at_10"])


def test_a_moved_index_directory_finds_its_lists(on_disk, tmp_path):
    out, _ = on_disk
    queries = clustered_unit_vectors(6_100, seed=7)[6_000:]
    before = open_index(out).search(queries, 10)
    moved = shutil.copytree(out, tmp_path / "elsewhere" / "moved.index")
    after = open_index(moved, mmap=True).search(queries, 10)
    np.testing.assert_array_equal(before[1], after[1])


def test_an_s3_round_trip_carries_the_lists(on_disk, tmp_path, monkeypatch):
    out, info = on_disk
    queries = clustered_unit_vectors(6_100, seed=7)[6_000:]
    with s3_server(tmp_path) as server:
        for name, value in server.env.items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        url = "s3://embedpipe/od.index"
        from embedpipe.formats.index_dir import upload_index_dir

        upload_index_dir(out, url)
        loaded = open_index(url)
        np.testing.assert_array_equal(loaded.search(queries, 10)[1], open_index(out).search(queries, 10)[1])
        line = assert_one_line_error(run_cli("index", "unused.vectors", "--out", url, "--append"), "on disk",
                                     "rebuild the index over all the vectors")
        assert url in line


def test_missing_or_truncated_lists_are_one_line(on_disk, tmp_path):
    out, _ = on_disk
    broken = shutil.copytree(out, tmp_path / "broken.index")
    data = broken / IVFDATA_FILE
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size - 20)       # a search would read past the end: SIGBUS, not an error
    with pytest.raises(CorruptArtifact, match="index.ivfdata has 119980 bytes, index.json says 120000"):
        open_index(broken)
    data.unlink()
    with pytest.raises(CorruptArtifact, match="the inverted lists file index.ivfdata that index.json names is missing"):
        open_index(broken)
    info = json.loads((broken / "index.json").read_text())
    info["inverted_lists"]["file"] = "../elsewhere.ivfdata"
    (broken / "index.json").write_text(json.dumps(info))
    with pytest.raises(CorruptArtifact, match="names the inverted lists file '../elsewhere.ivfdata'; expected index"):
        open_index(broken)


def test_append_to_on_disk_lists_is_refused(on_disk, vectors):
    out, _ = on_disk
    with pytest.raises(BadInput, match="keeps its inverted lists on disk .* rebuild the index over all the vectors"):
        append_index(out, vectors[0])


def test_lists_plans():
    assert plan_lists("IVF32,PQ24x4fs", 32, 12, 6_000, 24, 10**6).on_disk is False
    assert plan_lists("IVF32,Flat", 32, 96, 6_000, 24, 10**6, "disk").factory == "IVF32,Flat"
    assert plan_lists("IVF32,PQ24x4fs", 32, 12, 6_000, 24, 1, "ram").on_disk is False
    with pytest.raises(BadInput, match="inverted_lists=disk needs an IVF factory; 'HNSW32'"):
        plan_lists("HNSW32", None, 0, 6_000, 24, 10**6, "disk")
    with pytest.raises(BadInput, match="cannot be on disk"):
        plan_lists("IVF32,RQ4x4fs", 32, 2, 6_000, 24, 1)
    with pytest.raises(Exception, match="inverted_lists must be one of"):
        IndexConfig(inverted_lists="tape")


def test_faiss_prints_stay_off_standard_output(tmp_path):
    """`index --json` and a reader print only their JSON: FAISS's C prints go to stderr or nowhere."""
    small = write_vectors(tmp_path / "s.vectors", clustered_unit_vectors(2_000, seed=5), rows_per_shard=1_000)
    out = tmp_path / "json.index"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    built = subprocess.run([sys.executable, "-m", "embedpipe", "index", str(small), "--out", str(out),
                            "--factory", "IVF8,PQ24x4np", "--inverted-lists", "disk", "--json"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    assert json.loads(built.stdout)["inverted_lists"]["on"] == "disk"
    read = subprocess.run([sys.executable, "-c", "import sys; from embedpipe.index import open_index; "
                           "open_index(sys.argv[1]); print('opened')", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert read.returncode == 0 and read.stdout == "opened\n", (read.stdout, read.stderr[-2000:])


def test_auto_with_no_index_fitting_in_ram_keeps_its_lists_on_disk(corpus, tmp_path):
    """12,000 vectors under 80 KB: even 4-byte codes' lists (144 KB) exceed it, the quantizers do not."""
    info = build_index(corpus[0], tmp_path / "a.index", IndexConfig(max_memory="80KB", tuning_queries=200))
    assert info["factory"] == "IVF256,PQ6x8np" and info["inverted_lists"]["on"] == "disk"
    assert info["refine"]["from"] == "exact_store" and info["memory_bytes"] <= 80_000
    assert info["recall_reached"], info["recall_at_10"]
    with pytest.raises(Exception, match="raise max_memory"):   # with the lists kept in RAM, nothing fits
        build_index(corpus[0], tmp_path / "b.index", IndexConfig(max_memory="80KB", inverted_lists="ram"))


def test_sample_queries_are_refused_by_a_build_in_parts(vectors, tmp_path):
    config = IndexConfig(factory=PLAIN, inverted_lists="disk", tuning_vectors=str(vectors[0]))
    with pytest.raises(BadInput, match="tuning_vectors .* are not used by a build in parts"):
        build_index(vectors[0], tmp_path / "t.index", config)
    assert not (tmp_path / "t.index").exists()
