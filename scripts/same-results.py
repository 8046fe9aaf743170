"""Compare two `twin run` result folders table by table: exit 1 if any Parquet table differs.

Used to show that a refactoring changed no result: run the same scenario, seed and options before and after,
then `python scripts/same-results.py BEFORE AFTER`. run.json (wall time, run id) and the store are not compared.
"""

import sys
from pathlib import Path

import pandas as pd

before, after = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(p.relative_to(before) for p in before.rglob("*.parquet"))
bad = 0
for rel in files:
    a, b = pd.read_parquet(before / rel), pd.read_parquet(after / rel)
    same = a.equals(b)
    same_bytes = (before / rel).read_bytes() == (after / rel).read_bytes()
    print(f"{'same' if same else 'DIFFERENT'}  {rel}  {len(a):,} rows{'  (byte-identical)' if same_bytes else ''}")
    bad += not same
print(f"{len(files) - bad} of {len(files)} tables identical")
sys.exit(1 if bad or not files else 0)
