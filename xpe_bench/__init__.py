"""xpe-bench: honest, per-language evaluation of cross-lingual transfer methods."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xpe-bench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
