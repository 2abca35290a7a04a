"""gpu_check.sh's step: a generated full-size JPEG data set, prepared, then 200 steps of train.py from it.

python benchmarks/gpu_prepared_run.py OUT      # writes OUT/images, OUT/prepared, OUT/runs/prepared_200_steps
"""

import os
import subprocess
import sys
from pathlib import Path

from bench import photo_like_jpegs  # beside this file

from alexnet.data.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]

out = Path(sys.argv[1]).resolve()
images = out / "images"
if not images.is_dir():
    photo_like_jpegs(images / "train", 2000, classes=10)
    photo_like_jpegs(images / "val", 200, classes=10, seed=1)
prepared = prepare(images, out / "prepared", workers=os.cpu_count())
overrides = [
    "data=prepared", f"data.root={prepared}", "data.num_workers=12", "trainer.accelerator=gpu", "logger=csv",
    "trainer.max_steps=200", "trainer.log_every_n_steps=20", f"hydra.run.dir={out / 'runs' / 'prepared_200_steps'}",
]  # fmt: skip
sys.exit(subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=ROOT).returncode)
