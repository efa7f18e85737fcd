#!/usr/bin/env bash
# Meta-train the toy genome (paper Sec. 4.1) and evaluate it on the held-out tasks.
#   tools/meta_toy.sh            # the quick example (about a minute on 2 cores)
#   tools/meta_toy.sh long       # specs/experiments/toy_long.json (10-15 minutes)
#   tools/meta_toy.sh toy_gradient   # by gradient through the unroll (docs/meta.md; a few minutes)
# A stopped run continues with: blursim meta-train EXP --resume DIR
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-toy}
[ "$name" = short ] && name=toy
[ "$name" = long ] && name=toy_long
exp=specs/experiments/$name.json
out=runs/$name
if [ -f "$out/checkpoint.json" ]; then
  blursim meta-train "$exp" --resume "$out"
else
  time blursim meta-train "$exp" --out "$out"
fi
for task in center_circle small_center_circle pie_slice cross triangle; do
  for g in mean best; do
    printf '%-20s %-5s ' "$task" "$g"
    blursim evaluate specs/toy_blur.json --genome "$out/${g}_genome.json" --task "$task" \
      --steps 20 --replicas 8 | tail -1
  done
done
