"""Declarative task definitions: one TOML file per task, read by :mod:`xpe_bench.tasks`."""
