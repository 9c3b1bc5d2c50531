"""Built-in xpe-bench plugins (importable as ``xpe_bench_plugins``).

Each module here is advertised under the ``xpe_bench`` entry-point group in ``pyproject.toml`` and registers
through the same pluggy hooks a third-party package uses.
"""
