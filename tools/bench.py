#!/usr/bin/env python
"""Benchmark BLUR steps against the machine's GEMM roofline (same as ``blursim bench``).

    python tools/bench.py --json bench.json          # NumPy (default)
    python tools/bench.py --backend cupy             # on a GPU
    python tools/bench.py --backend jax              # the JAX engine's rows only

See blursim/bench/__init__.py for what each row measures, docs/benchmarks.md for results.
"""

import sys

from blursim.cli.main import main

if __name__ == "__main__":  # through blursim's CLI: a user error is one line, not a traceback
    sys.exit(main(["bench", *sys.argv[1:]]))
