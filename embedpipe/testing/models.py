"""Tiny models with random weights, built from real configs and saved like hub models: nothing is
downloaded, and every file is what embedpipe reads from a real model (config, tokenizer, weights,
sentence-transformers modules).

    >>> save_tiny_bert(Path("tiny-bert"), words=["cat", "dog"])              # 2 layers, 32 wide  # doctest: +SKIP
    >>> save_tiny_transformer(Path("tiny-qwen2"), "qwen2", words=["cat"])    # any of ARCHITECTURES  # doctest: +SKIP
    >>> save_tiny_sentence_transformer(Path("st"), Path("tiny-qwen2"), **TINY_MODEL_VARIANTS["qwen2"])  # doctest: +SKIP

Each architecture's tokenizer is of its own kind (WordPiece, byte-level BPE, a sentencepiece-style
unigram), trained here on the given words.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
TINY_WIDTH, TINY_LAYERS, TINY_HEADS, TINY_FFN, TINY_TOKENS = 32, 2, 2, 37, 64
# Weights drawn wider than transformers' default (std 0.02), so attention is far from uniform and
# every token state, the first one too, depends on the text: with the default, a tiny BERT's [CLS]
# state barely moves between texts, and parity of cls pooling would hold for any texts at all.
TINY_INIT = 0.5
ARCHITECTURES = ("bert", "distilbert", "roberta", "xlm-roberta", "mpnet", "modernbert", "qwen2")


def save_tiny_bert(path: Path, words: Sequence[str], characters: str = LETTERS, seed: int = 0,
                   initializer_range: float = 0.02) -> Path:
    """A 2-layer, 32-wide BERT with random weights (normal, std ``initializer_range``) and a WordPiece
    vocab of ``words`` plus single ``characters`` (and their ``##`` continuations), saved like a hub
    model; 64 tokens at most."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = _wordpiece(words, characters, BERT_SPECIALS, path)
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    tokenizer.model_max_length = TINY_TOKENS
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=TINY_WIDTH, num_hidden_layers=TINY_LAYERS,
                        num_attention_heads=TINY_HEADS, intermediate_size=TINY_FFN,
                        max_position_embeddings=TINY_TOKENS, initializer_range=initializer_range)
    BertModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_tiny_distilbert(path: Path, words: Sequence[str], characters: str = LETTERS, seed: int = 0,
                         initializer_range: float = 0.02) -> Path:
    """A 2-layer, 32-wide DistilBERT (no pooler, no token types) with random weights, saved like
    ``save_tiny_bert``."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = _wordpiece(words, characters, BERT_SPECIALS, path)
    tokenizer = DistilBertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    tokenizer.model_max_length = TINY_TOKENS
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=TINY_WIDTH, n_layers=TINY_LAYERS, n_heads=TINY_HEADS,
                              hidden_dim=TINY_FFN, max_position_embeddings=TINY_TOKENS,
                              initializer_range=initializer_range)
    DistilBertModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _training_text(words: Sequence[str], characters: str) -> list[str]:
    """What the BPE / unigram tokenizers are trained on: the words, their pairs, and single characters."""
    words = list(words)
    pairs = [f"{a} {b}" for a, b in zip(words, words[1:] + words[:1])]
    return words + pairs + list(characters) + [" ".join(words)]


BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _wordpiece(words: Sequence[str], characters: str, specials: Sequence[str], path: Path) -> Path:
    vocab = [*specials, *words, *characters, *(f"##{c}" for c in characters)]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return path / "vocab.txt"


def _byte_bpe(words: Sequence[str], characters: str, specials: Sequence[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(specials), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_training_text(words, characters), trainer)
    return tokenizer


def _unigram(words: Sequence[str], characters: str, specials: Sequence[str]):
    """A sentencepiece-style unigram tokenizer (what XLM-R ships), trained here with ``tokenizers``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=list(specials), unk_token="<unk>",
                                      show_progress=False)
    tokenizer.train_from_iterator(_training_text(words, characters), trainer)
    return tokenizer


def _template(tokenizer, first: str | None, last: str) -> None:
    """``first $A last`` around every text (``$A last`` when ``first`` is None), as the real tokenizers do."""
    from tokenizers import processors

    ids = {t: tokenizer.token_to_id(t) for t in (first, last) if t}
    single = f"{first} $A {last}" if first else f"$A {last}"
    tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=f"{single} $B {last}",
                                                             special_tokens=list(ids.items()))


def save_tiny_transformer(path: Path, architecture: str, words: Sequence[str], characters: str = LETTERS,
                          seed: int = 0) -> Path:
    """A 2-layer, 32-wide random model of ``architecture`` (one of ARCHITECTURES) with its own kind of
    tokenizer made here (WordPiece, byte-level BPE, or a sentencepiece-style unigram), saved like a hub model."""
    import torch
    import transformers as tf

    if architecture == "bert":
        return save_tiny_bert(path, words, characters, seed, initializer_range=TINY_INIT)
    if architecture == "distilbert":
        return save_tiny_distilbert(path, words, characters, seed, initializer_range=TINY_INIT)
    path.mkdir(parents=True, exist_ok=True)
    common = dict(vocab_size=0, hidden_size=TINY_WIDTH, num_hidden_layers=TINY_LAYERS,
                  num_attention_heads=TINY_HEADS, intermediate_size=TINY_FFN, max_position_embeddings=TINY_TOKENS,
                  initializer_range=TINY_INIT)
    roberta_specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]   # pad id 1, as RoBERTa / XLM-R have it
    if architecture == "mpnet":
        vocab = _wordpiece(words, characters, ["<s>", "<pad>", "</s>", "<unk>", "[UNK]", "<mask>"], path)
        tokenizer = tf.MPNetTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
        config = tf.MPNetConfig(**{**common, "vocab_size": len(tokenizer), "max_position_embeddings": TINY_TOKENS + 2})
    elif architecture in ("roberta", "xlm-roberta"):
        bpe = architecture == "roberta"
        raw = (_byte_bpe if bpe else _unigram)(words, characters, roberta_specials)
        _template(raw, "<s>", "</s>")
        cls = tf.RobertaTokenizerFast if bpe else tf.XLMRobertaTokenizerFast
        tokenizer = cls(tokenizer_object=raw, **({"add_prefix_space": False} if bpe else {}))
        # Positions start after the padding id (RoBERTa's offset), so the table needs two more rows.
        config = (tf.RobertaConfig if bpe else tf.XLMRobertaConfig)(
            **{**common, "vocab_size": len(tokenizer), "max_position_embeddings": TINY_TOKENS + 2},
            pad_token_id=1, bos_token_id=0, eos_token_id=2)
    elif architecture == "modernbert":
        vocab = _wordpiece(words, characters, BERT_SPECIALS, path)
        tokenizer = tf.BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
        tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, pad_token="[PAD]",
                                               unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                               mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"])
        config = tf.ModernBertConfig(vocab_size=len(tokenizer), hidden_size=TINY_WIDTH,
                                     num_hidden_layers=TINY_LAYERS, num_attention_heads=TINY_HEADS,
                                     intermediate_size=TINY_FFN, max_position_embeddings=TINY_TOKENS,
                                     pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3,
                                     global_attn_every_n_layers=2, local_attention=16, initializer_range=TINY_INIT)
    elif architecture == "qwen2":
        # Like Qwen3-Embedding: byte-level BPE, the EOS appended to every text, padding on the left.
        raw = _byte_bpe(words, characters, ["<|endoftext|>"])
        _template(raw, None, "<|endoftext|>")
        tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>",
                                               pad_token="<|endoftext|>", padding_side="left",
                                               model_input_names=["input_ids", "attention_mask"])
        config = tf.Qwen2Config(**{**common, "vocab_size": len(tokenizer)}, num_key_value_heads=1,
                                eos_token_id=0, pad_token_id=0, bos_token_id=None, tie_word_embeddings=False)
    else:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    tokenizer.model_max_length = TINY_TOKENS
    torch.manual_seed(seed)
    tf.AutoModel.from_config(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# One tiny sentence-transformers model per architecture, each configured like a known family, so that
# between them every pooling mode, module after pooling and prompt arrangement is exercised
# (arguments of save_tiny_sentence_transformer; pooling is sentence-transformers' name).
TINY_MODEL_VARIANTS = {
    "bert": dict(pooling="cls", dense=16, normalize=True,                      # BGE-like, with a Dense
                 prompts={"query": "query: ", "document": "passage: "}),
    "distilbert": dict(pooling="mean", normalize=True),                        # all-MiniLM-like, no prompts
    "roberta": dict(pooling="max", layer_norm=True,                            # nomic-like prompts
                    prompts={"query": "search_query: ", "document": "search_document: "}),
    "xlm-roberta": dict(pooling="mean", normalize=True,                        # multilingual-E5-like
                        prompts={"query": "query: ", "passage": "passage: "}),
    "mpnet": dict(pooling="mean_sqrt_len_tokens", dense=24, activation="identity"),
    "modernbert": dict(pooling="weightedmean", dense=20, activation="gelu",    # INSTRUCTOR-like: the prompt
                       include_prompt=False,                                   # is left out of the pooling
                       prompts={"query": "Represent the question: ", "document": "Represent the document: "}),
    "qwen2": dict(pooling="lasttoken", normalize=True,                         # Qwen3-Embedding-like decoder
                  prompts={"query": "Instruct: find the text\nQuery: "}),
}
# The vector width each variant promises (the Dense output where there is one, else the hidden size 32).
TINY_MODEL_DIMS = {name: variant.get("dense", TINY_WIDTH) for name, variant in TINY_MODEL_VARIANTS.items()}


TORCH_ACTIVATIONS = {"tanh": "torch.nn.modules.activation.Tanh", "identity": "torch.nn.modules.linear.Identity",
                     "relu": "torch.nn.modules.activation.ReLU", "gelu": "torch.nn.modules.activation.GELU"}


def save_tiny_sentence_transformer(path: Path, transformer_dir: Path, pooling: str = "mean", *,
                                   dense: int | None = None, activation: str = "tanh", layer_norm: bool = False,
                                   normalize: bool = False, prompts: dict | None = None,
                                   include_prompt: bool = True, seed: int = 0) -> Path:
    """``transformer_dir`` as a sentence-transformers model, written file by file as the hub's are
    (sentence-transformers itself is not needed): its Pooling (a sentence-transformers mode name: cls,
    mean, max, mean_sqrt_len_tokens, weightedmean, lasttoken), then a Dense to ``dense`` dims with
    ``activation`` (tanh, identity, relu, gelu) and random weights, a LayerNorm (not the identity), a
    Normalize, as asked; ``prompts`` in config_sentence_transformers.json."""
    import numpy as np
    from safetensors.numpy import save_file

    shutil.copytree(transformer_dir, path)  # the Transformer module lives in the model directory itself
    config = json.loads((path / "config.json").read_text())
    width = int(config.get("hidden_size") or config["dim"])
    rng = np.random.default_rng(seed)
    modules = [("", "sentence_transformers.models.Transformer"), ("1_Pooling", "sentence_transformers.models.Pooling")]
    (path / "1_Pooling").mkdir()
    _write_json(path / "1_Pooling" / "config.json",
                {"embedding_dimension": width, "pooling_mode": pooling, "include_prompt": include_prompt})
    if dense:
        folder = path / f"{len(modules)}_Dense"
        folder.mkdir()
        _write_json(folder / "config.json", {"in_features": width, "out_features": dense, "bias": True,
                                             "activation_function": TORCH_ACTIVATIONS[activation]})
        bound = 1 / np.sqrt(width)  # torch.nn.Linear's initialization range
        weights = {"linear.weight": rng.uniform(-bound, bound, (dense, width)).astype(np.float32),
                   "linear.bias": rng.uniform(-bound, bound, dense).astype(np.float32)}
        save_file(weights, str(folder / "model.safetensors"))
        modules.append((folder.name, "sentence_transformers.models.Dense"))
        width = dense
    if layer_norm:
        folder = path / f"{len(modules)}_LayerNorm"
        folder.mkdir()
        _write_json(folder / "config.json", {"dimension": width})
        save_file({"norm.weight": rng.uniform(0.5, 1.5, width).astype(np.float32),
                   "norm.bias": rng.uniform(-0.5, 0.5, width).astype(np.float32)}, str(folder / "model.safetensors"))
        modules.append((folder.name, "sentence_transformers.models.LayerNorm"))
    if normalize:
        (path / f"{len(modules)}_Normalize").mkdir()
        modules.append((f"{len(modules)}_Normalize", "sentence_transformers.models.Normalize"))
    _write_json(path / "modules.json", [{"idx": i, "name": str(i), "path": folder, "type": kind}
                                        for i, (folder, kind) in enumerate(modules)])
    _write_json(path / "sentence_bert_config.json", {"max_seq_length": TINY_TOKENS, "do_lower_case": False})
    _write_json(path / "config_sentence_transformers.json",
                {"model_type": "SentenceTransformer", "prompts": dict(prompts or {}), "default_prompt_name": None,
                 "similarity_fn_name": "cosine"})
    return path


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2))
