"""IndexConfig: what to build an index directory from a vector directory with; it checks itself
when built, so Python, a pipeline spec and the CLI refuse the same values with the same message.

    >>> IndexConfig(factory="HNSW32", ef_construction=120).metric
    'ip'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .. import checks
from ..encode.devices import check_device
from ..errors import ConfigError, EmbedpipeError
from ..formats.index_dir import METRICS
from .choose import parse_size
from .ondisk import LISTS_CHOICES
from .refine import EXACT_STORE_CHOICES

RUNNERS = ("auto", "local", "ray")

NOT_RECORDED = ("tuning_device",)
# recall_margin: nprobe / efSearch are tuned to target_recall + recall_margin on the tuning queries,
# because a value that just reaches the target on ~1000 sample queries misses it on other queries
# about as often as not: the sample's mean recall is a noisy estimate. Measured with
# scripts/bench_index.py's margin analysis (2000 real WordNet queries split at random 400 times into
# 1000 that tune and 1000 unseen; the tuner's rule applied to each split; 1 FAISS thread):
#   margin                              0      0.005   0.01   0.015
#   1M x 384, IVF4096,PQ192x4fs,RFlat
#     unseen recall below 0.95         35%     13%      2%     1%
#     mean queries/s (Flat: 112)      3238    2889    2590   2338
#   88k real, HNSW32
#     unseen recall below 0.95         40%      4%      1%     0%
#     mean queries/s (Flat: ~1240)    2942    2515    2277   2024
# 0.01 is the smallest margin that misses on at most ~2% of splits in both; it costs ~20% of the
# queries/s at 1M (still ~23x Flat). With 250 / 500 tuning queries the 0.01 margin missed on 15% / 5%
# of splits at 1M: fewer tuning queries need a wider margin, and the mean tuning-minus-unseen gap was
# only 0.0005-0.002, so the misses are noise, not bias.


@dataclass(frozen=True)
class IndexConfig:
    factory: str = "auto"            # "auto" (chosen under max_memory) or any FAISS factory string
    metric: str = checks.choice("ip", METRICS)  # "ip": inner product (cosine for normalized vectors); "l2"
    max_memory: int | str = "4GB"    # what the index may take in memory; guides the auto choice
    target_recall: float = 0.95      # recall@10 vs exact search that nprobe / efSearch are tuned to
    recall_margin: float = 0.01      # tuned to target_recall + this on the tuning queries (above)
    tuning_queries: int = 1000       # how many tuning queries (held-out corpus vectors by default)
    tuning_vectors: str | None = None  # sample *queries* to tune on instead (a vector dir, or a queries
                                       # parquet id,text): for queries unlike documents (keywords vs passages)
    add_batch_rows: int = 65_536     # vectors read and added per step
    seed: int = 0                    # for the training and tuning samples
    tuning_prompt_name: str | None = None  # a tuning queries parquet gets the recorded query prompt, or the
    tuning_prompt: str | None = None       # model's prompt of this name, or this text ("" = none)
    tuning_device: str = "auto"            # where a tuning queries parquet is encoded: auto, cpu, cuda, cuda:N
    rescore: bool = True             # compact (int8, binary) vectors: rank the candidates by exact scores (compact.py)
    rescore_from: str | None = None  # the vectors to rescore with: a float/int8 encode of the same corpus (binary
                                     # needs one); None: int8 codes rescore themselves
    rescore_multiplier: int = 4      # candidates taken from a compact index per result wanted, then rescored
    ef_construction: int | None = None  # HNSW graphs' construction search width; None: HNSW_EF_CONSTRUCTION
                                        # (80, factory.py) for `auto`'s choice, FAISS's 40 for a factory given by name
    exact_store: str = checks.choice("auto", EXACT_STORE_CHOICES)  # where the refine step reads exact vectors:
                                        # "auto": RAM when they fit max_memory, else a memory-mapped float16 store
                                        # on local disk (refine.py); "none": as the factory says; a dtype: a store
    inverted_lists: str = checks.choice("auto", LISTS_CHOICES)  # where an IVF index keeps its lists: "auto": RAM
                                        # when they fit max_memory, else memory-mapped from index.ivfdata on disk
                                        # (ondisk.py; built in parts and merged there); "ram"; "disk"
    runner: str = checks.choice("auto", RUNNERS)  # "local": one process; "ray": shards added by Ray tasks into
                                        # partial indexes, merged (parallel.py); "auto": ray when a cluster
                                        # is named and the index is IVF, else local
    ray_address: str | None = None      # the Ray cluster to join (host:port, ray://host:port); None: $RAY_ADDRESS,
                                        # else an embedded local Ray when runner=ray

    def record(self) -> dict:
        """The fields index.json records (what the index is built with): all but where the tuning
        queries were encoded, which changes no vector beyond rounding and so rebuilds nothing."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_RECORDED}

    def __post_init__(self):
        checks.text("factory", self.factory)
        checks.declared_choices(self)
        try:
            parse_size(self.max_memory)
        except EmbedpipeError as e:
            raise ConfigError("max_memory", f"is not a size: {e}") from None
        checks.number_in("target_recall", self.target_recall, 0.0, 1.0, low_open=True)
        checks.number_in("recall_margin", self.recall_margin, 0.0, 0.1)
        checks.at_least("tuning_queries", self.tuning_queries, 1)
        checks.path("tuning_vectors", self.tuning_vectors, optional=True)
        checks.at_least("add_batch_rows", self.add_batch_rows, 1)
        checks.at_least("seed", self.seed, 0)
        checks.text("tuning_prompt_name", self.tuning_prompt_name, optional=True)
        check_device(self.tuning_device, "tuning_device")
        if self.tuning_prompt is not None and not isinstance(self.tuning_prompt, str):
            raise ConfigError("tuning_prompt", f"must be a text, got {self.tuning_prompt!r}")
        checks.at_least("ef_construction", self.ef_construction, 1, optional=True)
        checks.boolean("rescore", self.rescore)
        checks.path("rescore_from", self.rescore_from, optional=True)
        checks.at_least("rescore_multiplier", self.rescore_multiplier, 1)
        checks.text("ray_address", self.ray_address, optional=True)

    def check(self) -> IndexConfig:
        """Kept for callers of the earlier API: the config checked itself when it was built."""
        return self
