"""SDV GaussianCopula without DP: the no-privacy utility reference (SDV 2.0 API)."""

import argparse
import json
import resource
import time

import numpy as np
import pandas as pd
from sdv.metadata import Metadata
from sdv.single_table import GaussianCopulaSynthesizer

parser = argparse.ArgumentParser()
parser.add_argument("--train", required=True)
parser.add_argument("--n", type=int, required=True)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--out", required=True)
args = parser.parse_args()

np.random.seed(args.seed)
data = pd.read_csv(args.train)
# SDV 2.0 API: metadata and data are dicts of tables, sample returns a dict
metadata = Metadata.detect_from_dataframes({"t": data})
start = time.perf_counter()
model = GaussianCopulaSynthesizer(metadata)
model.fit({"t": data})
fit_seconds = time.perf_counter() - start
out = model.sample(args.n)
(out["t"] if isinstance(out, dict) else out).to_csv(args.out, index=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"fit_seconds": fit_seconds, "peak_rss_mb": peak}))
