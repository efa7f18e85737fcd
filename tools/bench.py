#!/usr/bin/env python
"""Benchmark BLUR steps against the machine's GEMM roofline (same as ``blursim bench``).

    python tools/bench.py --json bench.json          # NumPy (default)
    python tools/bench.py --backend cupy             # on a GPU

See blursim/cli/bench.py for what each row measures, docs/benchmarks.md for results.
"""

import sys

from blursim.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
