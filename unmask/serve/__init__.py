"""``unmask serve``: a REST API and a single page over the scoring core (``unmask.serve.server``).

``create_app(checkpoints, **options) -> FastAPI`` (tests use it) and ``run_server(checkpoints, host, port,
**options)`` (blocking, uvicorn; ``unmask serve`` and ``unmask demo --serve`` call it). FastAPI is imported only
when one of them is called, so importing this package costs nothing.
"""

from __future__ import annotations


def create_app(checkpoints, **options):
    from unmask.serve.server import create_app as _create_app

    return _create_app(checkpoints, **options)


def run_server(checkpoints, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    from unmask.serve.server import run_server as _run_server

    _run_server(checkpoints, host=host, port=port, **options)


__all__ = ["create_app", "run_server"]
