"""Round 3, class 5: a model's modules.json may not point a module outside the model directory
(``../x``, an absolute path, a symlink out): those weights are not in the model's content hash, so
after they changed the old export would be reused silently. Refused, one line, before any export."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from embedpipe.errors import BadInput
from embedpipe.model.recipe import read_recipe
from tests.helpers import assert_one_line_error, run_cli, write_corpus


def st_model_with_dense(tiny_st_model, tmp_path) -> tuple[Path, list, int]:
    model = Path(shutil.copytree(tiny_st_model("bert"), tmp_path / "model"))
    entries = json.loads((model / "modules.json").read_text())
    dense = next((i for i, e in enumerate(entries) if e["type"].endswith("Dense")), None)
    if dense is None:
        pytest.skip("the tiny bert variant has no Dense module")
    return model, entries, dense


def move_out(model: Path, entries: list, index: int, how: str) -> None:
    folder = model / entries[index]["path"]
    outside = model.parent / "elsewhere"
    shutil.move(folder, outside)
    if how == "parent":
        entries[index]["path"] = "../elsewhere"
    elif how == "absolute":
        entries[index]["path"] = str(outside)
    elif how == "symlink":
        os.symlink(outside, folder)
    elif how == "dotdot inside":
        entries[index]["path"] = f"{entries[index]['path']}/../../elsewhere"
    (model / "modules.json").write_text(json.dumps(entries))


@pytest.mark.parametrize("how", ["parent", "absolute", "symlink", "dotdot inside"])
@pytest.mark.parametrize("module", ["dense", "pooling"])
def test_a_module_outside_the_model_directory_is_refused(tiny_st_model, tmp_path, how, module):
    model, entries, dense = st_model_with_dense(tiny_st_model, tmp_path)
    move_out(model, entries, dense if module == "dense" else 1, how)
    with pytest.raises(BadInput, match="outside the model directory"):
        read_recipe(model)
    corpus = write_corpus(tmp_path / "c.parquet")
    assert_one_line_error(run_cli("encode", corpus, "--model", model, "--runner", "local", "--out", tmp_path / "v"),
                          "outside the model directory", "modules.json")
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("path", [None, "", "."])
def test_the_transformer_in_the_model_directory_itself_still_reads(tiny_st_model, tmp_path, path):
    model, entries, _ = st_model_with_dense(tiny_st_model, tmp_path)
    if path is None:
        entries[0].pop("path", None)
    else:
        entries[0]["path"] = path
    (model / "modules.json").write_text(json.dumps(entries))
    assert read_recipe(model).modules


@pytest.mark.parametrize("path", [7, ["x"], "a\0b"])
def test_a_module_path_that_is_not_a_folder_name(tiny_st_model, tmp_path, path):
    model, entries, dense = st_model_with_dense(tiny_st_model, tmp_path)
    entries[dense]["path"] = path
    (model / "modules.json").write_text(json.dumps(entries))
    with pytest.raises(BadInput, match="modules.json"):
        read_recipe(model)
