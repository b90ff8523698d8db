"""int8 recipes: the attention output projections are found by the graph's shape in every
architecture, each recipe puts the weight types where it says, the check against fp32 falls back
when a recipe loses too much, and the VNNI recipe is what optimum's own config makes."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import onnx
import pytest

from embedpipe.errors import EmbedpipeError
from embedpipe.model import quantize
from embedpipe.model.export import ensure_exported
from embedpipe.model.quantize import (
    RECIPES,
    U8S8,
    U8S8_7BIT_ATTENTION_OUTPUT,
    apply_recipe,
    attention_output_matmuls,
    graph_inputs,
    pooled_states,
    quantize_int8,
    sample_feeds,
    split_matmuls,
)
from embedpipe.model.resolve import resolve_model

OUTPUT_PROJECTION = {  # how each architecture's exporter names its attention output projection
    "bert": "/attention/output/dense/MatMul",
    "distilbert": "/attention/out_lin/MatMul",
    "roberta": "/attention/output/dense/MatMul",
    "xlm-roberta": "/attention/output/dense/MatMul",
    "mpnet": "/attention/attn/o/MatMul",
    "modernbert": "/attn/Wo/MatMul",
    "qwen2": "/self_attn/o_proj/MatMul",
}


@pytest.fixture(scope="module")
def tiny_fp32(tiny_model_dir, tmp_path_factory):
    """A private copy of the tiny BERT's fp32 export (quantize_int8 writes beside its input)."""
    exported = ensure_exported(resolve_model(str(tiny_model_dir)))
    copy = tmp_path_factory.mktemp("tiny-fp32") / "export"
    shutil.copytree(exported.path, copy)
    return copy, exported.info["onnx_file"]


@pytest.mark.parametrize("architecture", sorted(OUTPUT_PROJECTION))
def test_attention_output_projections_are_found_by_the_graphs_shape(architecture, tiny_st_model):
    exported = ensure_exported(resolve_model(str(tiny_st_model(architecture))))
    graph = onnx.load(str(exported.onnx_path), load_external_data=False).graph
    found = attention_output_matmuls(graph)
    assert len(found) == 2 and all(name.endswith(OUTPUT_PROJECTION[architecture]) for name in found), found
    assert set(found) <= set(split_matmuls(graph)[0])


def weight_ranges(path) -> dict[str, int]:
    """Each quantized MatMul's original node name -> the largest |weight| of its int8/uint8 weights
    about their zero point."""
    model = onnx.load(str(path))
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    ranges = {}
    for node in model.graph.node:
        if node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul"):
            weights = initializers[node.input[1]].astype(np.int32)
            zero = initializers.get(node.input[3]) if node.op_type == "MatMulInteger" and len(node.input) > 3 else None
            centred = weights - (zero.astype(np.int32) if zero is not None else 0)
            ranges[node.name.removesuffix("_quant")] = int(np.abs(centred).max())
    return ranges


def test_the_pre_vnni_recipe_gives_7bit_weights_to_the_attention_output_projections_only(tiny_fp32, tmp_path):
    directory, onnx_file = tiny_fp32
    graph = onnx.load(str(directory / onnx_file), load_external_data=False).graph
    with_weights, activation_only = split_matmuls(graph)
    apply_recipe(directory / onnx_file, tmp_path / "q.onnx", U8S8_7BIT_ATTENTION_OUTPUT)

    ranges = weight_ranges(tmp_path / "q.onnx")
    reduced = set(attention_output_matmuls(graph))
    assert set(ranges) == set(with_weights)          # every weight MatMul quantized ...
    assert {n.name for n in onnx.load(str(tmp_path / "q.onnx")).graph.node
            if n.op_type == "MatMul"} == set(activation_only)  # ... and Q.K^T, softmax.V left in fp32
    assert {name: r for name, r in ranges.items() if name in reduced} and all(
        ranges[name] <= 64 for name in reduced)
    assert all(ranges[name] == 127 for name in set(with_weights) - reduced)
    assert not list(tmp_path.glob("*pass*"))         # the intermediate pass is removed


def test_the_vnni_recipe_is_what_optimums_avx512_vnni_config_makes(tiny_fp32, tmp_path):
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    directory, onnx_file = tiny_fp32
    _, activation_only = split_matmuls(onnx.load(str(directory / onnx_file), load_external_data=False).graph)
    config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True, operators_to_quantize=["MatMul"],
                                                nodes_to_exclude=activation_only)
    ORTQuantizer.from_pretrained(directory, file_name=onnx_file).quantize(quantization_config=config,
                                                                          save_dir=tmp_path / "optimum")
    apply_recipe(directory / onnx_file, tmp_path / "ours.onnx", U8S8)

    feeds = sample_feeds(directory / "tokenizer.json", graph_inputs(directory / onnx_file), 32)
    ours = pooled_states(tmp_path / "ours.onnx", feeds)
    np.testing.assert_array_equal(ours, pooled_states(tmp_path / "optimum" / "model_quantized.onnx", feeds))
    assert not np.array_equal(ours, pooled_states(directory / onnx_file, feeds))


# What each CPU a user or CI may have is detected as (platform.machine(), a line of /proc/cpuinfo's flags).
CPUS = {
    "AVX2 only (Haswell .. Comet Lake, Zen 1-3)": ("x86_64", "flags : fpu sse4_2 avx avx2 fma", "avx2"),
    # AVX-VNNI (Alder Lake and later, no AVX-512) is treated as AVX2 today: the 256-bit VNNI is not looked for.
    "AVX-VNNI without AVX-512": ("x86_64", "flags : fpu avx2 fma avx_vnni", "avx2"),
    "AVX-512 without VNNI (Skylake-X)": ("x86_64", "flags : fpu avx2 avx512f avx512bw avx512vl", "avx512"),
    "AVX-512 VNNI (Cascade Lake and later, Zen 4)": ("x86_64", "flags : avx2 avx512f avx512_vnni", "avx512_vnni"),
    "AVX-512 VNNI + AMX (Sapphire Rapids)": ("x86_64", "flags : avx512f avx512_vnni amx_int8", "avx512_vnni"),
    "ARM (Graviton, Apple silicon under Linux)": ("aarch64", "Features : fp asimd asimddp", "arm64"),
    "ARM reported as arm64 (macOS)": ("arm64", "", "arm64"),
}


@pytest.mark.parametrize("cpu", list(CPUS))
def test_each_cpu_is_tuned_for_its_instruction_set(cpu):
    machine, cpuinfo, isa = CPUS[cpu]
    assert quantize.isa_of(machine, cpuinfo) == isa and isa in RECIPES


def test_the_instruction_set_can_be_forced_and_a_wrong_one_is_refused(monkeypatch):
    for isa in RECIPES:
        monkeypatch.setenv(quantize.FORCE_ISA_ENV, isa)
        assert quantize.cpu_isa() == isa
    monkeypatch.setenv(quantize.FORCE_ISA_ENV, "avx1024")
    with pytest.raises(EmbedpipeError, match="choose one of avx512_vnni, arm64, avx512, avx2"):
        quantize.cpu_isa()


@pytest.mark.parametrize("isa", list(RECIPES))
@pytest.mark.parametrize("floor, first_kept, tried", [
    (0.0, True, 1),       # the first recipe passes: the fastest is kept
    (1.01, False, 2),     # none can pass: both tried, the closer one kept
])
def test_the_check_against_fp32_falls_back_to_the_next_recipe(tiny_fp32, tmp_path, monkeypatch, isa, floor,
                                                              first_kept, tried):
    directory, onnx_file = tiny_fp32
    work = tmp_path / "export"
    shutil.copytree(directory, work)
    monkeypatch.setattr(quantize, "QUALITY_FLOOR", floor)

    name, record = quantize_int8(work, onnx_file, work / "tokenizer.json", 32, isa=isa)

    assert [t["recipe"] for t in record["tried"]] == [r.name for r in RECIPES[isa]][:tried]
    best = max(record["tried"], key=lambda t: t["cosine_mean"])
    assert record["recipe"] == (RECIPES[isa][0].name if first_kept else best["recipe"])
    assert record["cosine_mean"] == best["cosine_mean"]
    assert sorted(p.name for p in work.glob("*.onnx")) == sorted([onnx_file, name])
    assert (quantize.quality_warning(record) is None) == (floor == 0.0)


# The recipes an int8 export tries, per instruction set, fastest first (the tests pin each one).
EXPECTED_RECIPES = {
    "avx2": ["u8s8-7bit-attention-output", "u8u8"],
    "avx512": ["u8s8-7bit-attention-output", "u8u8"],
    "avx512_vnni": ["u8s8", "u8u8"],
    "arm64": ["u8s8", "u8u8"],
}


def test_every_instruction_set_has_its_expected_recipes():
    assert {isa: [r.name for r in recipes] for isa, recipes in RECIPES.items()} == EXPECTED_RECIPES


@pytest.mark.parametrize("isa", sorted(EXPECTED_RECIPES))
def test_an_int8_export_records_its_recipe_and_warns_below_the_floor(isa, tiny_model_dir, tmp_path, monkeypatch,
                                                                     caplog):
    monkeypatch.setenv(quantize.FORCE_ISA_ENV, isa)
    monkeypatch.setattr(quantize, "QUALITY_FLOOR", 1.01)
    with caplog.at_level(logging.WARNING, logger="embedpipe.model.export"):
        exported = ensure_exported(resolve_model(str(tiny_model_dir)), quantize="int8", out=tmp_path / "int8")

    record = exported.info["quantize_recipe"]
    assert exported.info["quantize_isa"] == isa
    assert [t["recipe"] for t in record["tried"]] == EXPECTED_RECIPES[isa]
    assert record["recipe"] == max(record["tried"], key=lambda t: t["cosine_mean"])["recipe"]
    assert exported.info["onnx_file"] == "model_quantized.onnx" and exported.onnx_path.exists()
    assert [r.message for r in caplog.records if "int8 keeps a mean cosine" in r.message]


def test_an_int8_export_key_depends_on_the_instruction_set(tiny_model_dir, monkeypatch):
    from embedpipe.model import export

    model = resolve_model(str(tiny_model_dir))
    keys = {}
    for isa in RECIPES:
        monkeypatch.setenv(quantize.FORCE_ISA_ENV, isa)
        keys[isa] = export.export_key(model, None, "int8")
    assert len(set(keys.values())) == len(RECIPES)   # an int8 export made for one CPU is not reused on another


def test_only_int8_export_keys_depend_on_the_recipes_version(tiny_model_dir, monkeypatch):
    from embedpipe.model import export

    model = resolve_model(str(tiny_model_dir))
    before = export.export_key(model, None, None), export.export_key(model, None, "int8")
    monkeypatch.setattr(export, "RECIPES_VERSION", export.RECIPES_VERSION + 1)
    assert export.export_key(model, None, None) == before[0]
    assert export.export_key(model, None, "int8") != before[1]


# The recipe all-MiniLM-L6-v2's int8 export keeps on a CPU of each instruction set, and the mean cosine
# to fp32 on the sample texts it must reach there. The kernels are the host's: U8S8 saturates before
# VNNI and not with it, so only the host's own instruction set is checked (a forced one would run its
# recipe on other kernels). Measured: 0.9933 on AVX2 (u8s8-7bit-attention-output), 0.9939 on AVX-512
# VNNI (u8s8); AVX-512 without VNNI and ARM were not reachable and hold the floor itself.
MINILM_INT8 = {
    "avx2": ("u8s8-7bit-attention-output", 0.993),
    "avx512": ("u8s8-7bit-attention-output", quantize.QUALITY_FLOOR),
    "avx512_vnni": ("u8s8", 0.993),
    "arm64": ("u8s8", quantize.QUALITY_FLOOR),
}


@pytest.mark.slow
def test_the_bundled_model_keeps_its_instruction_sets_fast_recipe_above_the_floor(minilm_path, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.delenv(quantize.FORCE_ISA_ENV, raising=False)
    isa = quantize.cpu_isa()
    exported = ensure_exported(resolve_model(minilm_path), quantize="int8", out=tmp_path / "int8")
    record = exported.info["quantize_recipe"]
    recipe, floor = MINILM_INT8[isa]
    assert exported.info["quantize_isa"] == isa and set(MINILM_INT8) == set(RECIPES)
    assert record["recipe"] == recipe and record["recipe"] == RECIPES[isa][0].name, record
    assert record["cosine_mean"] >= floor >= quantize.QUALITY_FLOOR, record
