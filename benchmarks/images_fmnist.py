"""DP image generation on Fashion-MNIST, DPImageBench protocol (issue 8).

privsynth fits the whole pipeline (DP profile, tabular generator for the label, image generator) on the 60,000
training images with the label as the record's only field, at each epsilon (delta 1e-5), and samples 60,000
labelled synthetic images. Then, outside any privacy guarantee (this is a benchmark):

- a small CNN is trained on the synthetic images only; its checkpoint (epoch) is chosen on a validation split of
  the *synthetic* data (never on the real test set); its accuracy on the real 10,000 test images is reported;
- feature Frechet distance: penultimate features of the same CNN trained on real training images, real test vs
  synthetic (and real train vs real test as the reference);
- anchors (published, same protocol, GPU): epsilon 10: DPDM 85.4 %, DP-GAN 70.3 %, DP-MERF 60.8 %; epsilon 1:
  DPDM 76.4 %, DP-GAN 72.8 %. The same CNN trained on real images is the ceiling of this run.

    python benchmarks/images_fmnist.py [--data ../shared/data/fashion-mnist] [--epsilons 1 10] [--config FILE]

Prints one table and writes benchmarks/results/images_fmnist.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import measure, print_table, write_json
from fmnist_data import CLASSES, load_fmnist
from torch import nn
from torch.nn import functional as F  # noqa: N812

from privsynth.audit.text import frechet_distance
from privsynth.config import load_config
from privsynth.data.corpus import Corpus
from privsynth.data.images import encode_png
from privsynth.data.schema import schema_from_dict
from privsynth.generators.image.basis import to_array
from privsynth.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = {10.0: {"DPDM": 85.4, "DP-GAN": 70.3, "DP-MERF": 60.8}, 1.0: {"DPDM": 76.4, "DP-GAN": 72.8}}
TARGETS = {10.0: 75.0, 1.0: 70.0}


def corpus(images: np.ndarray, labels: np.ndarray) -> Corpus:
    from PIL import Image

    schema = schema_from_dict(
        {
            "table": "records.parquet",
            "key": "id",
            "columns": {
                "id": {"kind": "key"},
                "label": {"kind": "categorical", "domain": list(CLASSES), "nullable": False},
                "image": {"kind": "image", "image_size": [28, 28], "image_mode": "L"},
            },
        },
        source="images_fmnist",
    )
    records = pd.DataFrame(
        {
            "id": [f"f{i}" for i in range(len(images))],
            "label": np.asarray(CLASSES, dtype=object)[labels],
            "image": [encode_png(Image.fromarray(a, mode="L")) for a in images],
        }
    )
    return Corpus(records=records, schema=schema, root=Path())


class Net(nn.Module):
    """A small CNN (two conv blocks, one hidden layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (the space of the Frechet distance)."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.fc2(self.features(x))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [n, 28, 28] -> float [n, 1, 28, 28] in [-1, 1]."""
    return torch.as_tensor(images[:, None].astype(np.float32) / 127.5 - 1.0)


def accuracy(net: Net, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        predicted = torch.cat([net(x[i : i + 2000]).argmax(1) for i in range(0, len(x), 2000)])
    return float((predicted == y).float().mean())


def train_cnn(x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int, validation: float = 0.1) -> Net:
    """Train on ``x``; keep the epoch with the best accuracy on a validation split of the same data."""
    torch.manual_seed(seed)
    order = torch.randperm(len(x))
    cut = int(len(x) * validation)
    val, tr = order[:cut], order[cut:]
    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    best, best_state = -1.0, None
    for _ in range(epochs):
        net.train()
        for batch in tr[torch.randperm(len(tr))].split(128):
            optimizer.zero_grad()
            F.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
        score = accuracy(net, x[val], y[val])
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in net.state_dict().items()}
    assert best_state is not None
    net.load_state_dict(best_state)
    return net


def features(net: Net, x: torch.Tensor) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        return torch.cat([net.features(x[i : i + 2000]) for i in range(0, len(x), 2000)]).numpy()


def synthetic_arrays(records: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    from io import BytesIO

    from PIL import Image

    kept = records[records.image.notna()]
    images = np.stack(
        [((to_array(Image.open(BytesIO(b)), (28, 28), "L")[0] + 1) * 127.5).round() for b in kept.image]
    ).astype(np.uint8)
    labels = kept.label.map({c: i for i, c in enumerate(CLASSES)}).fillna(0).to_numpy().astype(np.int64)
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-mnist")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[10.0, 1.0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "fmnist-benchmark.yaml")
    parser.add_argument("--limit", type=int, default=None, help="Use only the first N training images (smoke).")
    parser.add_argument("--cnn-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    train_x, train_y, test_x, test_y = load_fmnist(args.data)
    if args.limit:
        train_x, train_y = train_x[: args.limit], train_y[: args.limit]
    config = load_config(args.config).model_copy(update={"holdout_fraction": 0.0})
    test_t, test_yt = to_tensor(test_x), torch.as_tensor(test_y.astype(np.int64))
    print(f"Fashion-MNIST: train {len(train_x)}, test {len(test_x)}; CNN on real images (ceiling)...", flush=True)
    real_net = train_cnn(
        to_tensor(train_x), torch.as_tensor(train_y.astype(np.int64)), epochs=args.cnn_epochs, seed=args.seed
    )
    real_test_features = features(real_net, test_t)
    rows: list[dict[str, object]] = [
        {
            "method": "CNN on real (ceiling)",
            "accuracy": 100 * accuracy(real_net, test_t, test_yt),
            "frechet": frechet_distance(real_test_features, features(real_net, to_tensor(train_x[:10000]))),
        }
    ]
    real = corpus(train_x, train_y)
    for epsilon in args.epsilons:
        print(f"fitting privsynth at epsilon {epsilon}...", flush=True)

        def progress(stage: str, step: int, total: int) -> None:
            if step % 100 == 0 or step == total:
                print(f"  {stage}: step {step}/{total}", flush=True)

        with measure() as fit:
            synth = Synthesizer(config).fit(real, epsilon=epsilon, delta=1e-5, seed=args.seed, progress=progress)
        start = time.perf_counter()
        sampled, _ = synth.sample(60_000, seed=args.seed + 1)
        sample_seconds = time.perf_counter() - start
        images, labels = synthetic_arrays(sampled)
        grid = np.concatenate([np.concatenate(list(images[labels == c][:10]), axis=1) for c in range(10)], axis=0)
        from PIL import Image

        grid_path = ROOT / "benchmarks" / "results" / f"images_fmnist_eps{epsilon:g}.png"
        grid_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(grid_path)
        print(f"  training the CNN on {len(images)} synthetic images...", flush=True)
        net = train_cnn(to_tensor(images), torch.as_tensor(labels), epochs=args.cnn_epochs, seed=args.seed)
        row = {
            "method": "privsynth",
            "epsilon": synth.ledger_.epsilon,
            "accuracy": 100 * accuracy(net, test_t, test_yt),
            "frechet": frechet_distance(real_test_features, features(real_net, to_tensor(images[:10000]))),
            "target": TARGETS.get(epsilon),
            "fit_seconds": fit.seconds,
            "sample_per_s": 60_000 / sample_seconds,
            "grid": str(grid_path),
        }
        rows.append(row)
        print(f"  {row}", flush=True)
        for name, value in ANCHORS.get(epsilon, {}).items():
            rows.append({"method": f"{name} (published, GPU)", "epsilon": epsilon, "accuracy": value})
    print()
    print_table(rows, ["method", "epsilon", "accuracy", "frechet", "target", "fit_seconds", "sample_per_s"])
    write_json("images_fmnist", {"rows": rows, "config": config.model_dump(mode="json")}, args.out)


if __name__ == "__main__":
    main()
