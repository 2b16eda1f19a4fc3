"""Speed of one DP-SGD step of the diffusion image model (issue 8), on random images: hardware only, no data.

For each setting (TF32 on/off, records per chunk) it times a few steps of the configured batch after a warm-up
and reports seconds per step, rows per second (records x noise multiplicity) and peak GPU memory. With
``--profile FILE`` it also profiles one step of the first setting and writes the operators that took the most
time (GPU time on a GPU), which is where to look when a step is slower than the network's size suggests.

    python benchmarks/diffusion_step.py --config configs/fmnist-gpu.yaml --chunks 256 512 1024 --profile prof.txt

Prints one table and writes benchmarks/results/diffusion_step.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import print_table, write_json

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def diffusion_trainer(config: object, units: int, steps: int, size: int = 28) -> object:
    """A diffusion trainer on ``units`` random one-channel images (ten classes), sized by ``config``."""
    from privsynth.generators.dpsgd import Groups
    from privsynth.generators.image.diffusion import Denoiser
    from privsynth.generators.image.generator import ImageConfig, ImageGenerator
    from privsynth.privacy.accounting import Mechanism
    from privsynth.privacy.randomness import Streams

    assert isinstance(config, ImageConfig) and config.model == "diffusion"
    rate = config.optim.sample_rate(units)
    noise = np.random.default_rng(0).uniform(-1, 1, size=(units, 1, size, size)).astype(np.float32)
    generator = ImageGenerator(config)
    generator.column_ = "image"
    return generator._diffusion_trainer(
        Denoiser(channels=1, classes=10, config=config.diffusion),
        noise,
        torch.as_tensor(np.arange(units) % 10),
        torch.ones(units),
        Groups.from_labels(None, units),
        Mechanism(noise_multiplier=1.0, sample_rate=rate, steps=steps),
        Streams.private(),
        units,
    )


def seconds_per_step(config: object, units: int, *, warm: int = 2, timed: int = 4) -> float:
    """Mean seconds of ``timed`` DP-SGD steps after ``warm`` ones, under the config's precision setting."""
    from privsynth.generators.image.diffusion import gpu_precision
    from privsynth.generators.image.generator import ImageConfig

    assert isinstance(config, ImageConfig)
    device = config.diffusion.resolved_device()
    trainer = diffusion_trainer(config, units, warm + timed)
    with gpu_precision(device, config.diffusion.tf32):
        trainer.run(until=warm)  # type: ignore[attr-defined]
        _sync(device)
        start = time.perf_counter()
        trainer.run()  # type: ignore[attr-defined]
        _sync(device)
    return (time.perf_counter() - start) / timed


def profile_step(config: object, units: int, path: Path, rows: int = 30) -> None:
    """Profile one step (after a warm-up) and write the operators that took the most time to ``path``."""
    from torch.profiler import ProfilerActivity, profile

    from privsynth.generators.image.diffusion import gpu_precision
    from privsynth.generators.image.generator import ImageConfig

    assert isinstance(config, ImageConfig)
    device = config.diffusion.resolved_device()
    trainer = diffusion_trainer(config, units, 2)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with gpu_precision(device, config.diffusion.tf32):
        trainer.run(until=1)  # type: ignore[attr-defined]
        _sync(device)
        with profile(activities=activities) as prof:
            trainer.run()  # type: ignore[attr-defined]
            _sync(device)
    averages = prof.key_averages()
    tables = [averages.table(sort_by="self_cpu_time_total", row_limit=rows)]
    if device.type == "cuda":
        tables.insert(0, averages.table(sort_by="self_device_time_total", row_limit=rows))
    path.write_text("\n\n".join(tables), encoding="utf-8")
    print(tables[0])


def main() -> None:
    import yaml

    from privsynth.generators.image.generator import ImageConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "fmnist-gpu.yaml")
    parser.add_argument("--units", type=int, default=60_000, help="Training set size (sets the Poisson rate).")
    parser.add_argument("--chunks", type=int, nargs="+", default=None, help="Records per chunk (default: config).")
    parser.add_argument("--tf32", choices=["on", "off", "both"], default="both")
    parser.add_argument("--timed", type=int, default=4, help="Steps timed per setting (after two warm-up steps).")
    parser.add_argument("--profile", type=Path, default=None, help="Write a profile of one step here.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    section = yaml.safe_load(args.config.read_text(encoding="utf-8")).get("image", {})
    base = ImageConfig.model_validate(section)
    device = base.diffusion.resolved_device()
    chunks = args.chunks or [base.diffusion.chunk]
    precisions = {"on": [True], "off": [False], "both": [True, False]}[args.tf32]
    records = base.optim.sample_rate(args.units) * args.units
    k = base.diffusion.noise_multiplicity
    print(f"device {device}; ~{records:.0f} records x {k} draws per step", flush=True)
    results: list[dict[str, object]] = []
    for tf32 in precisions:
        for chunk in chunks:
            diffusion = base.diffusion.model_copy(update={"chunk": chunk, "tf32": tf32})
            config = base.model_copy(update={"diffusion": diffusion})
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            per_step = seconds_per_step(config, args.units, timed=args.timed)
            row = {
                "tf32": tf32,
                "chunk": chunk,
                "records": round(records),
                "draws": k,
                "seconds_per_step": per_step,
                "rows_per_s": records * k / per_step,
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
            }
            results.append(row)
            print(f"  {row}", flush=True)
    if args.profile is not None:
        first = base.model_copy(update={"diffusion": base.diffusion.model_copy(update={"chunk": chunks[0]})})
        profile_step(first, args.units, args.profile)
    print()
    print_table(results, ["tf32", "chunk", "records", "draws", "seconds_per_step", "rows_per_s", "peak_gib"])
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    write_json("diffusion_step", {"device": name, "config": str(args.config), "rows": results}, args.out)


if __name__ == "__main__":
    main()
