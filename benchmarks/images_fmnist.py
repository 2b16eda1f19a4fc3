"""DP image generation on Fashion-MNIST, DPImageBench protocol (issue 8).

privsynth fits the whole pipeline (DP profile, tabular generator for the label, image generator) on the 60,000
training images with the label as the record's only field, at each epsilon (delta 1e-5), and samples 60,000
labelled synthetic images. Then, outside any privacy guarantee (this is a benchmark):

- a small CNN is trained on the synthetic images only; its checkpoint (epoch) is chosen on a validation split of
  the *synthetic* data (never on the real test set); its accuracy on the real 10,000 test images is reported;
- feature Frechet distance: penultimate features of the same CNN trained on real training images, real test vs
  synthetic (and real train vs real test as the reference);
- for the mixture, the same CNN trained on the real images passed through its public DCT basis: what the basis
  keeps (the mixture's own ceiling, below the real-image one);
- anchors (published, same protocol, GPU): epsilon 10: DPDM 85.4 %, DP-GAN 70.3 %, DP-MERF 60.8 %; epsilon 1:
  DPDM 76.4 %, DP-GAN 72.8 %. The same CNN trained on real images is the ceiling of this run.

    python benchmarks/images_fmnist.py [--data ../shared/data/fashion-mnist] [--epsilons 1 10] [--config FILE]
    python benchmarks/images_fmnist.py --direct --config configs/fmnist-gpu.yaml --epsilons 10   # on a GPU
    ... --direct --fit-seconds 270 --guidance 0    # train ~270 s; also sample without guidance (reported apart)

``--direct`` fits the image generator alone, the label being a public condition as in DPImageBench (the whole
epsilon goes to the image stage, the labels are sampled uniformly), without the profile and tabular stages: it
imports only the image generator, so it runs where privsynth's audit dependencies are not installed (a GPU
machine with torch, opacus and pydantic).

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
from privsynth.data.corpus import Corpus
from privsynth.data.images import encode_png
from privsynth.data.schema import schema_from_dict
from privsynth.generators.image.basis import to_array

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = {10.0: {"DPDM": 85.4, "DP-GAN": 70.3, "DP-MERF": 60.8}, 1.0: {"DPDM": 76.4, "DP-GAN": 72.8}}
TARGETS = {10.0: 75.0, 1.0: 70.0}
GPU_TARGETS = {10.0: 85.0}
SAMPLES = 60_000  # synthetic images the CNN trains on (the protocol's number; --samples changes it for smoke runs)


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


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def accuracy(net: Net, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    d = _device(net)
    with torch.no_grad():
        predicted = torch.cat([net(x[i : i + 2000].to(d)).argmax(1).cpu() for i in range(0, len(x), 2000)])
    return float((predicted == y).float().mean())


def train_cnn(
    x: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int, validation: float = 0.1, device: str = "cpu"
) -> Net:
    """Train on ``x``; keep the epoch with the best accuracy on a validation split of the same data."""
    torch.manual_seed(seed)
    order = torch.randperm(len(x))
    cut = int(len(x) * validation)
    val, tr = order[:cut], order[cut:]
    net = Net().to(device)
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    best, best_state = -1.0, None
    for _ in range(epochs):
        net.train()
        for batch in tr[torch.randperm(len(tr))].split(128):
            optimizer.zero_grad()
            F.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
        score = accuracy(net, x[val], y[val].cpu())
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in net.state_dict().items()}
    assert best_state is not None
    net.load_state_dict(best_state)
    return net


def features(net: Net, x: torch.Tensor) -> np.ndarray:
    net.eval()
    d = _device(net)
    with torch.no_grad():
        return torch.cat([net.features(x[i : i + 2000].to(d)).cpu() for i in range(0, len(x), 2000)]).numpy()


def synthetic_arrays(records: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    from io import BytesIO

    from PIL import Image

    kept = records[records.image.notna()]
    images = np.stack(
        [((to_array(Image.open(BytesIO(b)), (28, 28), "L")[0] + 1) * 127.5).round() for b in kept.image]
    ).astype(np.uint8)
    labels = kept.label.map({c: i for i, c in enumerate(CLASSES)}).fillna(0).to_numpy().astype(np.int64)
    return images, labels


def basis_ceiling(
    config_path: Path,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_t: torch.Tensor,
    test_yt: torch.Tensor,
    args: argparse.Namespace,
    device: str,
) -> dict[str, object] | None:
    """For the mixture: the CNN trained on *real* images passed through its public DCT basis (what the basis keeps).

    No private model involved; it shows how much of the gap to the real-image ceiling the basis itself explains.
    """
    import yaml

    from privsynth.generators.image.basis import decode, encode
    from privsynth.generators.image.generator import ImageConfig

    config = ImageConfig.model_validate(yaml.safe_load(config_path.read_text(encoding="utf-8")).get("image", {}))
    if config.model != "mixture":
        return None
    keep = min(config.keep, 28)
    low = decode(encode(to_tensor(train_x).numpy(), keep), 1, 28, 28, keep)
    net = train_cnn(
        torch.as_tensor(low),
        torch.as_tensor(train_y.astype(np.int64)),
        epochs=args.cnn_epochs,
        seed=args.seed,
        device=device,
    )
    return {
        "method": f"CNN on real images through the DCT basis (keep {keep})",
        "accuracy": 100 * accuracy(net, test_t, test_yt),
    }


def fit_pipeline(
    config_path: Path, train_x: np.ndarray, train_y: np.ndarray, epsilon: float, seed: int, samples: int = SAMPLES
) -> tuple[pd.DataFrame, dict[str, object]]:
    """The whole privsynth pipeline (DP profile, tabular label, image); 60,000 sampled records."""
    from privsynth.config import load_config
    from privsynth.synthesizer import Synthesizer

    config = load_config(config_path).model_copy(update={"holdout_fraction": 0.0})

    def progress(stage: str, step: int, total: int) -> None:
        if step % 100 == 0 or step == total:
            print(f"  {stage}: step {step}/{total}", flush=True)

    with measure() as fit:
        synth = Synthesizer(config).fit(corpus(train_x, train_y), epsilon=epsilon, delta=1e-5, progress=progress)
    start = time.perf_counter()
    sampled = synth.sample(samples, seed=seed + 1)  # the seed drives sampling only (fit noise: OS entropy)
    info = {
        "epsilon": synth.ledger_.epsilon,
        "fit_seconds": fit.seconds,
        "sample_per_s": samples / (time.perf_counter() - start),
        "config": config.model_dump(mode="json"),
    }
    return sampled, info


def probe_epochs(config: object, units: int, seconds: float) -> float:
    """Image epochs that train in about ``seconds`` here, timed on random images (hardware only, no data)."""
    from diffusion_step import seconds_per_step

    from privsynth.generators.image.generator import ImageConfig

    assert isinstance(config, ImageConfig) and config.model == "diffusion"
    k, rate = config.diffusion.noise_multiplicity, config.optim.sample_rate(units)
    per_step = seconds_per_step(config, units, warm=2, timed=4)
    epochs = max(seconds / per_step * rate, 0.1)
    print(f"  probe: {per_step:.3f} s per step of ~{rate * units:.0f} records x {k} draws -> {epochs:.1f} epochs")
    return round(epochs, 2)


def fit_direct(
    config_path: Path,
    train_x: np.ndarray,
    train_y: np.ndarray,
    epsilon: float,
    seed: int,
    fit_seconds: float | None = None,
    guidances: list[float] | None = None,
    samples: int = SAMPLES,
) -> list[tuple[pd.DataFrame, dict[str, object]]]:
    """The image generator alone, the label a public condition (DPImageBench); the whole epsilon on images.

    Samples 60,000 labelled images with the config's settings, then once more per extra guidance weight
    (sampling is post-processing: free in privacy, but reported apart, since the config's weight is the result).
    """
    import yaml

    from privsynth.generators.base import FitContext
    from privsynth.generators.dpsgd import unit_groups
    from privsynth.generators.image.generator import ImageConfig, ImageGenerator
    from privsynth.generators.tabular.codecs import CategoricalCodec
    from privsynth.generators.tabular.generator import TabularGenerator
    from privsynth.privacy.ledger import PrivacyLedger
    from privsynth.privacy.planner import plan_budget
    from privsynth.privacy.randomness import Streams
    from privsynth.profile.model import ImageProfile, Profile, Source

    section = yaml.safe_load(config_path.read_text(encoding="utf-8")).get("image", {})
    config = ImageConfig.model_validate(section)
    if fit_seconds is not None:
        epochs = probe_epochs(config, len(train_x), fit_seconds)
        config = config.model_copy(update={"optim": config.optim.model_copy(update={"epochs": epochs})})
    generator = ImageGenerator(config)
    shape = generator.plan(len(train_x))
    plan = plan_budget(epsilon=epsilon, delta=1e-5, shapes=[shape], shares={shape.stage: 1.0})
    ledger = PrivacyLedger(epsilon=epsilon, delta=1e-5)
    codec = CategoricalCodec("label", categories=list(CLASSES), has_other=False, nullable=False)
    profile = ImageProfile(source=Source.PUBLIC, missing_rate=0.0, size=(28, 28), mode="L")
    sigma = plan.mechanism(shape.stage).noise_multiplier
    print(f"  sigma {sigma:.3f}, q {shape.sample_rate:.4f}, {shape.steps} steps", flush=True)
    started = time.perf_counter()

    def progress(label: str, step: int, total: int) -> None:
        if step % 25 == 0 or step == total:
            rate = step / (time.perf_counter() - started)
            print(f"  {label}: step {step}/{total} ({rate:.2f} steps/s)", flush=True)

    records = corpus(train_x, train_y)
    tabular = TabularGenerator()
    tabular.codecs_ = [codec]  # the label is a public condition here (DPImageBench protocol)
    groups = unit_groups(records)
    context = FitContext(
        profile=Profile(
            internal=False,
            records=len(train_x),
            unit_of_privacy="record",
            max_records_per_entity=1,
            noise_multiplier=sigma,
            queries=0,
            columns={"image": profile},
        ),
        ledger=ledger,
        noise_multiplier=sigma,
        streams=Streams.private(),
        groups=groups,
        units=len(train_x),  # the image count is public in this benchmark (DPImageBench protocol)
        upstream={"tabular": tabular},
        progress=progress,
    )
    generator.fit(records, columns=["image"], context=context)
    fit_seconds = time.perf_counter() - started
    labels = np.arange(samples) % len(CLASSES)
    results = []
    for guidance in [None, *(guidances or [])]:
        if guidance is not None:
            diffusion = config.diffusion.model_copy(update={"guidance": guidance})
            generator.config = config.model_copy(update={"diffusion": diffusion})
        records = pd.DataFrame({"label": np.asarray(CLASSES, dtype=object)[labels]})
        start = time.perf_counter()
        records["image"] = generator.sample_pngs(records, streams=Streams.sampling(seed + 1 + len(results)))
        info = {
            "epsilon": ledger.epsilon,
            "fit_seconds": fit_seconds,
            "sample_per_s": samples / (time.perf_counter() - start),
            "config": generator.config.model_dump(mode="json"),
            "sigma": sigma,
            "steps": shape.steps,
            "image_epochs": config.optim.epochs,
            "guidance": generator.config.diffusion.guidance,
            "extra_sampling": guidance is not None,
        }
        results.append((records, info))
    return results


def evaluate(
    method: str,
    sampled: pd.DataFrame,
    info: dict[str, object],
    epsilon: float,
    real_net: Net,
    real_test_features: np.ndarray,
    test_t: torch.Tensor,
    test_yt: torch.Tensor,
    args: argparse.Namespace,
) -> dict[str, object]:
    """Train the CNN on the synthetic images, score it on the real test set; save a grid of samples."""
    device = _device(real_net)
    images, labels = synthetic_arrays(sampled)
    grid = np.concatenate([np.concatenate(list(images[labels == c][:10]), axis=1) for c in range(10)], axis=0)
    from PIL import Image

    suffix = f"_g{info['guidance']:g}" if "guidance" in info and "extra" in method else ""
    grid_path = ROOT / "benchmarks" / "results" / f"images_fmnist_eps{epsilon:g}{suffix}.png"
    grid_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(grid_path)
    print(f"  training the CNN on {len(images)} synthetic images...", flush=True)
    net = train_cnn(to_tensor(images), torch.as_tensor(labels), epochs=args.cnn_epochs, seed=args.seed, device=device)
    targets = GPU_TARGETS if device.type == "cuda" else TARGETS
    row = {
        "method": method,
        **info,
        "accuracy": 100 * accuracy(net, test_t, test_yt),
        "frechet": frechet_distance(real_test_features, features(real_net, to_tensor(images[:10000]))),
        "target": targets.get(epsilon),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "grid": str(grid_path),
    }
    print(f"  {row}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-mnist")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[10.0, 1.0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "fmnist-benchmark.yaml")
    parser.add_argument("--direct", action="store_true", help="Fit the image generator alone (see above).")
    parser.add_argument("--limit", type=int, default=None, help="Use only the first N training images (smoke).")
    parser.add_argument(
        "--fit-seconds",
        type=float,
        default=None,
        help="With --direct and the diffusion model: set the image epochs so training takes about this long here "
        "(timed on random images first; a hardware choice, no data involved).",
    )
    parser.add_argument(
        "--guidance",
        type=float,
        nargs="*",
        default=None,
        help="With --direct: also sample with these classifier-free guidance weights (reported apart).",
    )
    parser.add_argument("--cnn-epochs", type=int, default=8)
    parser.add_argument("--samples", type=int, default=SAMPLES, help="Synthetic images (smoke runs only).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.fit_seconds is not None and not args.direct:
        parser.error("--fit-seconds sets the diffusion model's epochs and needs --direct")
    if args.guidance and not args.direct:
        parser.error("--guidance samples the diffusion model again and needs --direct")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)
    # on a GPU the diffusion model's TF32 products follow its config (diffusion.tf32); cudnn.benchmark stays
    # off: Poisson batches change shape every step and it would re-tune every convolution for each new shape

    train_x, train_y, test_x, test_y = load_fmnist(args.data)
    if args.limit:
        train_x, train_y = train_x[: args.limit], train_y[: args.limit]
    test_t, test_yt = to_tensor(test_x), torch.as_tensor(test_y.astype(np.int64))
    print(f"Fashion-MNIST: train {len(train_x)}, test {len(test_x)}; CNN on real images (ceiling)...", flush=True)
    real_net = train_cnn(
        to_tensor(train_x),
        torch.as_tensor(train_y.astype(np.int64)),
        epochs=args.cnn_epochs,
        seed=args.seed,
        device=device,
    )
    real_test_features = features(real_net, test_t)
    rows: list[dict[str, object]] = [
        {
            "method": "CNN on real (ceiling)",
            "accuracy": 100 * accuracy(real_net, test_t, test_yt),
            "frechet": frechet_distance(real_test_features, features(real_net, to_tensor(train_x[:10000]))),
        }
    ]
    ceiling = basis_ceiling(args.config, train_x, train_y, test_t, test_yt, args, device)
    if ceiling is not None:
        rows.append(ceiling)
    configs: dict[str, object] = {}
    method = "privsynth (image stage alone)" if args.direct else "privsynth"
    for epsilon in args.epsilons:
        print(f"fitting {method} at epsilon {epsilon}...", flush=True)
        if args.direct:
            runs = fit_direct(
                args.config, train_x, train_y, epsilon, args.seed, args.fit_seconds, args.guidance, args.samples
            )
        else:
            runs = [fit_pipeline(args.config, train_x, train_y, epsilon, args.seed, args.samples)]
        for sampled, info in runs:
            extra = bool(info.pop("extra_sampling", False))
            config = info.pop("config")
            if not extra:
                configs[f"{epsilon:g}"] = config
            label = method + (f", guidance {info['guidance']:g} (extra sampling)" if extra else "")
            rows.append(evaluate(label, sampled, info, epsilon, real_net, real_test_features, test_t, test_yt, args))
        for name, value in ANCHORS.get(epsilon, {}).items():
            rows.append({"method": f"{name} (published, GPU)", "epsilon": epsilon, "accuracy": value})
    print()
    print_table(rows, ["method", "epsilon", "accuracy", "frechet", "target", "fit_seconds", "sample_per_s"])
    write_json("images_fmnist", {"rows": rows, "configs": configs}, args.out)


if __name__ == "__main__":
    main()
