"""Real pieces for tests and benchmarks, never mocks: tiny models and real local services.

    models.py     tiny random models of every supported architecture, built from real configs and saved
                  like hub models (plain transformers or sentence-transformers); nothing is downloaded
    services.py   a Ray head and extra Ray nodes, moto's S3 API server, on free loopback ports, each
                  stopped by its process group's id

    >>> from embedpipe.testing import ray_head, save_tiny_bert    # or from the module that defines it  # doctest: +SKIP
"""

from .models import (
    ARCHITECTURES,
    LETTERS,
    TINY_MODEL_DIMS,
    TINY_MODEL_VARIANTS,
    save_tiny_bert,
    save_tiny_distilbert,
    save_tiny_sentence_transformer,
    save_tiny_transformer,
)
from .services import (
    BIN,
    RAY_ENV,
    WORKER_PORTS,
    RayHead,
    RayNode,
    S3Server,
    free_ports,
    ray_head,
    ray_node,
    ray_ports,
    s3_server,
    wait_for_nodes,
    wait_for_port,
)

__all__ = ["ARCHITECTURES", "BIN", "LETTERS", "RAY_ENV", "TINY_MODEL_DIMS", "TINY_MODEL_VARIANTS", "WORKER_PORTS",
           "RayHead", "RayNode", "S3Server", "free_ports", "ray_head", "ray_node", "ray_ports", "s3_server",
           "save_tiny_bert", "save_tiny_distilbert", "save_tiny_sentence_transformer", "save_tiny_transformer",
           "wait_for_nodes", "wait_for_port"]
