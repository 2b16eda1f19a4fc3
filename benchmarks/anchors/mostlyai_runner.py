"""mostlyai-engine TabularARGN with DP: value protection gets 10 % of epsilon, training the rest."""

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
from mostlyai import engine
from mostlyai.engine.domain import DifferentialPrivacyConfig

parser = argparse.ArgumentParser()
parser.add_argument("--train", required=True)
parser.add_argument("--epsilon", type=float, required=True)
parser.add_argument("--delta", type=float, required=True)
parser.add_argument("--n", type=int, required=True)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--max-minutes", type=float, default=10.0)
parser.add_argument("--out", required=True)
args = parser.parse_args()

engine.set_random_state(args.seed)
data = pd.read_csv(args.train)
with tempfile.TemporaryDirectory() as ws:
    workspace = Path(ws)
    start = time.perf_counter()
    dp = DifferentialPrivacyConfig(
        max_epsilon=0.9 * args.epsilon,
        delta=args.delta,
        noise_multiplier=1.5,
        max_grad_norm=1.0,
        value_protection_epsilon=0.1 * args.epsilon,
    )
    engine.split(workspace_dir=workspace, tgt_data=data, model_type="TABULAR")
    engine.analyze(workspace_dir=workspace, value_protection=True, differential_privacy=dp)
    engine.encode(workspace_dir=workspace)
    engine.train(
        workspace_dir=workspace,
        differential_privacy=dp,
        max_training_time=args.max_minutes,
        enable_flexible_generation=False,
    )
    fit_seconds = time.perf_counter() - start
    engine.generate(workspace_dir=workspace, sample_size=args.n)
    out = pd.read_parquet(workspace / "SyntheticData")
out.to_csv(args.out, index=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"fit_seconds": fit_seconds, "peak_rss_mb": peak}))
