"""What a newcomer gets from the default config on a small multimodal corpus (issue 18, item 5).

    python benchmarks/default_config.py [--n 2000] [--epsilon 8] [--variants default demo fixed]
                                        [--tabular-only] [--repeats K]

Writes the built-in demo corpus (``--n`` records, seed 0), leaves its notes out (the text stage is issue 19's
and its cost would dominate), and fits it at ``--epsilon`` with each variant:

- ``default``: no config at all (``FitConfig()``): what ``privsynth fit`` does without ``--config``;
- ``demo``: the image settings ``configs/demo.yaml`` tunes by hand for this corpus size;
- ``fixed``: the defaults with the size rule turned off (the settings tuned for 22,611 rows, 60,000 images);
- ``LABEL:key=value,...``: the defaults with dotted overrides (``small:tabular.hidden=64,tabular.layers=1``).

Each fit samples ``--n`` records. Outside any privacy guarantee (a benchmark), against an independent real demo
corpus (seed 1001) as the test set:

- scans: logistic regression on real training scan pixels predicts the diagnosis; its accuracy on the
  independent real scans is the reference, its accuracy on each synthetic scan against that synthetic record's
  own diagnosis the measure (issue 18's target: ratio >= 0.8);
- tabular TSTR: the audit's TSTR (HistGradientBoosting on synthetic fields, scored on the real test corpus) over
  the same on real training fields (target: ratio >= 0.8);
- SDMetrics' Column Pair Trends between the real training fields and the synthetic ones (the audit's figure).

``--tabular-only`` leaves the scans out too (the tabular stage then gets the whole budget but the profile's
share: fits of ~30 s, for comparing tabular settings); ``--repeats K`` fits each variant K times (single small
fits vary by about +-0.1) and the table shows each fit and the means.

Prints one table and writes benchmarks/results/default_config.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import print_table, write_json
from demo_modalities import pixels
from sklearn.linear_model import LogisticRegression

from privsynth.audit.utility import sdmetrics_quality, tstr
from privsynth.config import FitConfig, load_config
from privsynth.data.corpus import Corpus, read_corpus
from privsynth.data.demo import write_demo_corpus
from privsynth.sampling import write_synthetic
from privsynth.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[1]
TARGET = "diagnosis"


def without_notes(corpus: Corpus, *, drop: tuple[str, ...] = ("note",)) -> Corpus:
    """The corpus with its text column (and any other ``drop``) left out of records and schema."""
    columns = {k: v for k, v in corpus.schema.columns.items() if k not in drop}
    schema = corpus.schema.model_copy(update={"columns": columns})
    return Corpus(records=corpus.records.drop(columns=list(drop)), schema=schema, root=corpus.root)


def variant_config(name: str) -> FitConfig:
    """A named variant, or ``label:key=value,key=value`` overrides of the defaults (dotted keys)."""
    if ":" in name:
        base = FitConfig().model_dump()
        for item in name.split(":", 1)[1].split(","):
            key, value = item.split("=")
            *path, last = key.split(".")
            node = base
            for part in path:
                node = node[part]
            node[last] = yaml_value(value)
        return FitConfig.model_validate(base)
    if name == "default":
        return FitConfig()
    if name == "demo":
        demo = load_config(None).model_dump()
        tuned = load_config_inline(ROOT / "configs" / "demo.yaml")
        demo["image"] = {**demo["image"], **tuned["image"]}
        return FitConfig.model_validate(demo)
    if name == "fixed":
        base = FitConfig().model_dump()
        base["image"]["size_rule"] = False
        base["tabular"]["size_rule"] = False
        return FitConfig.model_validate(base)
    raise SystemExit(f"unknown variant {name}")


def yaml_value(text: str) -> object:
    import yaml

    return yaml.safe_load(text)


def load_config_inline(path: Path) -> dict[str, object]:
    import yaml

    return dict(yaml.safe_load(path.read_text())["fit"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--variants", nargs="+", default=["default", "demo", "fixed"])
    parser.add_argument("--tabular-only", action="store_true", help="Leave the scans out too (tabular settings).")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    drop = ("note", "scan") if args.tabular_only else ("note",)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        real = without_notes(read_corpus(write_demo_corpus(Path(tmp) / "train", n=args.n, seed=0)), drop=drop)
        test = without_notes(read_corpus(write_demo_corpus(Path(tmp) / "test", n=1000, seed=1001)), drop=drop)
        scans = None
        real_scan = float("nan")
        if not args.tabular_only:
            x_train, keep_train = pixels(real, "scan")
            x_test, keep_test = pixels(test, "scan")
            scans = LogisticRegression(max_iter=2000, C=0.1).fit(x_train, real.records[TARGET].to_numpy()[keep_train])
            real_scan = float((scans.predict(x_test) == test.records[TARGET].to_numpy()[keep_test]).mean())
        for name in args.variants:
            for repeat in range(args.repeats):
                config = variant_config(name)
                print(f"fitting '{name}' (n={args.n}, epsilon {args.epsilon:g}, repeat {repeat + 1})...", flush=True)
                start = time.perf_counter()
                synth = Synthesizer(config).fit(real, epsilon=args.epsilon)
                seconds = time.perf_counter() - start
                out = Path(tmp) / f"synthetic-{len(rows)}"
                synthetic = read_corpus(write_synthetic(synth, out, n=args.n, seed=args.seed))
                syn_scan = float("nan")
                image_settings = "-"
                if scans is not None:
                    x_syn, keep_syn = pixels(synthetic, "scan")
                    syn_scan = float((scans.predict(x_syn) == synthetic.records[TARGET].to_numpy()[keep_syn]).mean())
                    image = synth.images_["scan"].config
                    image_settings = f"keep {image.keep}, rank {image.rank}, epochs {image.optim.epochs:g}"
                table = tstr(real.records, test.records, synthetic.records, real.schema, TARGET)
                quality = sdmetrics_quality(real.records, synthetic.records, real.schema) or {}
                rows.append(
                    {
                        "variant": name,
                        "repeat": repeat,
                        "scan_real": real_scan,
                        "scan_synthetic": syn_scan,
                        "scan_ratio": syn_scan / real_scan,
                        "tstr_real": table.real,
                        "tstr_synthetic": table.synthetic,
                        "tstr_ratio": table.synthetic / table.real,
                        "pair_trends": quality.get("Column Pair Trends", float("nan")),
                        "image_settings": image_settings,
                        "fit_seconds": seconds,
                    }
                )
                print(rows[-1], flush=True)
    means = [
        {
            "variant": f"{name} (mean)",
            **{
                key: float(np.mean([float(r[key]) for r in rows if r["variant"] == name]))  # type: ignore[arg-type]
                for key in ("scan_ratio", "tstr_ratio", "pair_trends", "fit_seconds")
            },
        }
        for name in args.variants
    ]
    columns = ["variant", "scan_real", "scan_synthetic", "scan_ratio", "tstr_real", "tstr_synthetic", "tstr_ratio"]
    print_table(rows, [*columns, "pair_trends", "image_settings", "fit_seconds"])
    print_table(means, ["variant", "scan_ratio", "tstr_ratio", "pair_trends", "fit_seconds"])
    for row in means:
        scan, ratio = float(row["scan_ratio"]), float(row["tstr_ratio"])  # type: ignore[arg-type]
        ok = (args.tabular_only or scan >= 0.8) and ratio >= 0.8
        verdict = "met" if ok else "MISSED"
        print(f"{row['variant']}: scan ratio {scan:.2f}, TSTR ratio {ratio:.2f} (targets >= 0.8) {verdict}")
    payload = {"rows": rows, "means": means, "n": args.n, "epsilon": args.epsilon, "tabular_only": args.tabular_only}
    write_json("default_config", payload, args.out)


if __name__ == "__main__":
    main()
