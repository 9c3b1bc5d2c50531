"""``python -m xpe_bench`` = ``xpe-bench``."""

from xpe_bench.cli import main

main()
