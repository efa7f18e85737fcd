#!/usr/bin/env python
"""How strong are the laws? Plant each bug of blursim.testing.mutants and run the laws.

    python tools/mutation_check.py                          # the kept twelve, 10 draws per family, 2 per law
    python tools/mutation_check.py --examples 40 --all      # every mutant, 40 draws per family
    python tools/mutation_check.py --mutants oja_factor_sign --families generic

For every mutant, ``laws.check_all(spec, genome, batches, conform=True)`` runs (as docs/testing.md
shows) on the same derandomized draws of each family (``generic``: every rule option;
``paper_family``; ``backprop``: DESIGN §3 with the backprop genome; ``domains``: ``--per-law`` draws
from each law's domain strategy), with the bug planted; a
mutant is caught when some law raises a LawViolation on some draw. Prints a Markdown table
(docs/testing.md keeps the one measured) and exits 1 if fewer than ``--need`` mutants are caught.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blursim.testing.mutants import FAMILIES, KEPT, MUTANTS, check_mutant, drawn_cases, mutation_table  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=10, help="draws per family (default 10)")
    ap.add_argument("--per-law", type=int, default=2, help="draws per law for the 'domains' family (default 2)")
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated ({', '.join(FAMILIES)})")
    ap.add_argument("--mutants", default=None, help="comma-separated names (default: the kept twelve)")
    ap.add_argument("--all", action="store_true", help="every registered mutant, not only the kept twelve")
    ap.add_argument("--need", type=int, default=None, help="exit 1 below this many caught (default: all but one)")
    args = ap.parse_args(argv)
    names = args.mutants.split(",") if args.mutants else (list(MUTANTS) if args.all else list(KEPT))
    for n in names:
        if n not in MUTANTS:
            print(f"unknown mutant {n!r}; valid: {', '.join(MUTANTS)}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    cases = []
    for fam in args.families.split(","):
        fam = fam.strip()
        cases += drawn_cases(fam, args.per_law if fam == "domains" else args.examples)
    results = []
    for n in names:
        t = time.perf_counter()
        results.append(check_mutant(n, cases))
        print(f"  {n}: caught in {results[-1].caught} of {results[-1].runs} ({time.perf_counter() - t:.0f} s)",
              file=sys.stderr)
    print(mutation_table(results))
    print(f"{len(cases)} drawn cases ({args.examples} per family, {args.per_law} per law for 'domains': "
          f"{args.families}); "
          f"{time.perf_counter() - t0:.0f} s")
    need = len(names) - 1 if args.need is None else args.need
    return 0 if sum(r.is_caught for r in results) >= need else 1


if __name__ == "__main__":
    sys.exit(main())
