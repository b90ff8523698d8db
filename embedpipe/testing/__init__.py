"""Real pieces for tests and benchmarks, never mocks: tiny models and real local services.

    models.py     tiny random models of every supported architecture, built from real configs and saved
                  like hub models (plain transformers or sentence-transformers); nothing is downloaded
    services.py   a Ray head and extra Ray nodes, moto's S3 API server, on free loopback ports, each
                  stopped by its process group's id

    >>> from embedpipe.testing.models import save_tiny_bert       # doctest: +SKIP
    >>> from embedpipe.testing.services import ray_head            # doctest: +SKIP
"""
