"""gpu_check.sh's summary table: each step's outcome, the bench's headline figures, the paper recipe's take-off.

python benchmarks/gpu_summary.py gpu-check
"""

import csv
import json
import math
import sys
from pathlib import Path

from alexnet.metric_names import TRAIN_LOSS, TRAIN_SAMPLES_PER_SEC

out = Path(sys.argv[1])
CHANCE = math.log(10)  # the demo data's ten classes


def metrics(run: str) -> list[dict]:
    files = sorted((out / "runs" / run).rglob("metrics.csv"))
    if not files:
        return []
    with open(files[-1]) as file:
        return list(csv.DictReader(file))


def take_off(rows: list[dict]) -> str:
    """The first logged step from which the training loss stays below 90% of chance, and the last loss."""
    losses = [(int(r["step"]), float(r[TRAIN_LOSS])) for r in rows if r.get(TRAIN_LOSS)]
    if not losses:
        return "no losses logged"
    below = [i for i, (_, loss) in enumerate(losses) if loss < 0.9 * CHANCE]
    left = next((losses[i][0] for i in below if all(loss < 0.9 * CHANCE for _, loss in losses[i:])), None)
    last_step, last = losses[-1]
    where = f"left chance (ln 10 = {CHANCE:.2f}) at step {left}" if left is not None else "stayed at chance"
    return f"{where}; loss {last:.3f} at step {last_step}"


print("| check | result | seconds |\n|---|---|---:|")
for line in (out / "status.tsv").read_text().splitlines():
    name, result, seconds = line.split("\t")
    print(f"| {name} | {result} | {seconds} |")
print()
bench = out / "bench.json"
if bench.is_file():
    rows = json.loads(bench.read_text())["rows"]
    print("| bench (CUDA) | img/s | note |\n|---|---:|---|")
    for r in rows:
        if r["section"] == "step" and r["model"] == "this project":
            compiled = ", compiled" if r["compiled"] else ""
            share = f"LRN {r['lrn_share']:.0%} of the step" if "lrn_share" in r else ""
            print(f"| step b{r['batch']} {r['precision']}{compiled} | {r['img_per_s']:,.0f} | {share} |")
        if r["section"] == "loop":
            print(f"| {r['loop']} b{r['batch']} w{r.get('workers')} | {r['img_per_s']:,.0f} | |")
        if r["section"] == "input":
            print(f"| input: {r['path']} | {r['total']:,.0f} | per core {r.get('per_core', float('nan')):,.0f} |")
    print()
print("| run | outcome |\n|---|---|")
for run in ("paper_recipe", "paper_recipe_caffe_init", "prepared_200_steps"):
    rows = metrics(run)
    rates = [float(r[TRAIN_SAMPLES_PER_SEC]) for r in rows if r.get(TRAIN_SAMPLES_PER_SEC)]
    speed = f"; {rates[-1]:,.0f} img/s" if rates else ""
    print(f"| {run} | {take_off(rows) if rows else 'no metrics'}{speed} |")
