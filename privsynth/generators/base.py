"""What every generator provides, and the registry that names them.

A generator learns one modality of the corpus under DP-SGD. The synthesizer walks the registry in order (the
order records are generated in: the tabular fields first, then what is conditioned on them) and, for each
generator, finds the columns it models: by default every column of its ``kinds``; a column can name another
generator in ``schema.yaml`` (``generator: NAME``). A *joint* generator models all its columns in one instance
(the tabular one); the others get one instance per column.

The contract (scikit-learn's: ``__init__`` stores settings, learned state ends in ``_``):

- ``plan(units)``: the DP-SGD shape (sample rate, steps) for ``units`` units of privacy, for the budget planner;
- ``fit(corpus, context=...)``: learn from the contribution-bounded records, spending its planned mechanism in the
  ledger before drawing any noise, every random draw from ``context.streams``;
- ``sample(context)``: the values of its columns for the synthetic records so far (post-processing);
- ``save(folder)`` / ``load(folder)``: safetensors weights plus JSON, no pickle.

Adding a modality is a sub-package with a :class:`Generator` and one :meth:`Registry.register` line in
:mod:`privsynth.generators.registry`; the synthesizer, planner, sampler and CLI need no edit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from privsynth.data.schema import ColumnKind, Schema
from privsynth.errors import ConfigError, NotFittedError

if TYPE_CHECKING:
    import pandas as pd

    from privsynth.engine.base import Engine
    from privsynth.generators.dpsgd import Groups
    from privsynth.privacy.ledger import PrivacyLedger
    from privsynth.privacy.planner import StageShape
    from privsynth.privacy.randomness import Streams
    from privsynth.profile.model import Profile

Progress = Callable[[str, int, int], None]
"""``progress(label, step, steps)``: what a long stage reports (labels like "text 'note'"; sampling stages start
with "sampling ", and count records)."""


@dataclass(frozen=True)
class FitContext:
    """Everything a generator's ``fit`` may use besides the records: all of it DP, public, or the fit's own."""

    profile: Profile
    ledger: PrivacyLedger
    noise_multiplier: float
    streams: Streams
    groups: Groups
    units: int
    upstream: Mapping[str, Generator] = field(default_factory=dict)
    checkpoint: Path | None = None
    progress: Progress | None = None
    engine: Engine | None = None  # where DP-SGD's clipped gradient sums are computed (noise stays here)

    def report(self, label: str) -> Callable[[int, int, float], None] | None:
        """A ``(step, steps, loss)`` callback reporting under ``label``: steps only.

        The loss of a Poisson batch is an exact, un-noised statistic of private records: it is never shown or logged.
        """
        progress = self.progress
        if progress is None:
            return None
        return lambda step, total, _loss: progress(label, step, total)


@dataclass(frozen=True)
class SampleContext:
    """The synthetic records so far (tabular fields, keys, identifiers), their identities, and sampling streams."""

    n: int
    records: pd.DataFrame
    identities: pd.DataFrame
    others: pd.DataFrame
    streams: Streams
    conditions: Mapping[str, Any] = field(default_factory=dict)
    progress: Progress | None = None
    #: spans each text column's scrub replaced (:mod:`privsynth.pii.scrub`), summed by the sampler into
    #: ``synthetic.json``; depends on the synthetic texts only
    scrubbed: dict[str, int] = field(default_factory=dict)
    #: the model's DP profile (text lengths: ``text.lengths``); ``None`` where a caller has none
    profile: Profile | None = None

    def report(self, label: str) -> Callable[[int, int], None] | None:
        """A ``(done, total)`` callback reporting records drawn under ``label`` (long sampling: text, images)."""
        progress = self.progress
        if progress is None:
            return None
        return lambda done, total: progress(label, done, total)


class Generator(ABC):
    """Base class of every generator; see the module docstring for the contract."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[ColumnKind, ...]] = ()
    stage: ClassVar[str]
    joint: ClassVar[bool] = False
    settings: ClassVar[type[BaseModel]]
    #: Relative budget weight of this generator's stage when the config's ``split`` does not name it.
    default_share: ClassVar[float] = 6.0
    #: Set by the synthesizer after a DP fit (keyed corpus fingerprint, run id, ledger) and saved with the weights,
    #: so a fit asked to start from this checkpoint can refuse it (same corpus) or compose its spend (another).
    provenance_: dict[str, object] | None = None

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.settings()

    def _check_fitted(self, attribute: str) -> None:
        if not hasattr(self, attribute):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() or load() first")

    def plan(self, units: int) -> StageShape:
        """Sample rate and steps this instance will run on ``units`` units of privacy (DP-SGD: its ``optim``)."""
        optim = getattr(self.config, "optim", None)
        if optim is None:
            raise NotImplementedError(f"{type(self).__name__} has no 'optim' settings: define plan()")
        shape: StageShape = optim.stage_shape(self.stage, units)
        return shape

    @abstractmethod
    def fit(self, corpus: Any, *, columns: list[str], context: FitContext) -> Generator:
        """Learn ``columns`` of the contribution-bounded ``corpus``; returns ``self``."""

    @abstractmethod
    def sample(self, context: SampleContext) -> dict[str, Any]:
        """Values of this instance's columns for ``context.n`` synthetic records (column name -> values)."""

    def public_data(self) -> list[dict[str, object]]:
        """Public data it learned without noise (listed in provenance and datasheets); none by default."""
        return []

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write weights (safetensors) and metadata (JSON) into ``folder``."""

    def _write(
        self, folder: Path, *, weights: str, tensors: Mapping[str, Any], meta: str, fields: dict[str, Any]
    ) -> None:
        """The one way generators save: safetensors weights, and JSON with their settings and provenance."""
        import json

        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / weights))
        payload = {"config": self.config.model_dump(mode="json"), **fields, "provenance": self.provenance_}
        (folder / meta).write_text(json.dumps(payload, indent=2), encoding="utf-8")

    @classmethod
    def _read(cls, folder: Path, *, weights: str, meta: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """``(generator with its settings and provenance, metadata, tensors)`` from :meth:`_write` output."""
        import json

        import torch
        from safetensors.torch import load_file

        from privsynth.errors import IntegrityError

        fields = json.loads((folder / meta).read_text(encoding="utf-8"))
        generator = cls(cls.settings.model_validate(fields["config"]))
        generator.provenance_ = fields.get("provenance")
        tensors = load_file(str(folder / weights))
        broken = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
        if broken:
            raise IntegrityError(
                f"{folder / weights}: weights {', '.join(broken[:5])} hold NaN or infinite values (a damaged file, or "
                "a fit that diverged: fit again, with a lower learning rate if it recurs)"
            )
        return generator, fields, tensors

    @classmethod
    @abstractmethod
    def load(cls, folder: Path) -> Generator:
        """Read a generator written by :meth:`save` (no pickle)."""


@dataclass(frozen=True)
class Instance:
    """One generator instance of a fit: its registry name, the columns it models, its key in a model folder."""

    name: str
    columns: tuple[str, ...]
    joint: bool

    @property
    def key(self) -> str:
        """``tabular`` for a joint generator, ``text:note`` for a per-column one."""
        return self.name if self.joint else f"{self.name}:{self.columns[0]}"

    @classmethod
    def from_key(cls, key: str, columns: tuple[str, ...]) -> Instance:
        """The instance a model folder lists under ``key`` (its columns from the model's metadata)."""
        name, sep, _ = key.partition(":")
        return cls(name, columns, joint=not sep)

    @property
    def folder(self) -> str:
        """Its sub-folder of a model folder (``text-note``)."""
        return self.key.replace(":", "-")


class Registry:
    """Named generator classes in generation order; refuses duplicate names (like Opacus' accountant registry)."""

    def __init__(self) -> None:
        self._factories: dict[str, Callable[[], type[Generator]]] = {}

    def register(self, name: str, factory: Callable[[], type[Generator]]) -> None:
        """Register a lazy factory returning the class (heavy imports happen on first use), after the others."""
        if name in self._factories:
            raise ValueError(f"a generator named '{name}' is already registered")
        self._factories[name] = factory

    def unregister(self, name: str) -> None:
        """Remove a generator (for tests and plug-ins that replace one)."""
        self._factories.pop(name)

    def get(self, name: str) -> type[Generator]:
        """The generator class registered under ``name``."""
        try:
            return self._factories[name]()
        except KeyError:
            known = ", ".join(self._factories)
            raise ConfigError(f"no generator named '{name}' (registered: {known})") from None

    def names(self) -> list[str]:
        """Registered names, in generation order."""
        return list(self._factories)

    def instances(self, schema: Schema) -> list[Instance]:
        """The generator instances a schema needs, in generation order (see the module docstring)."""
        chosen: dict[str, list[str]] = {name: [] for name in self._factories}
        unknown = []
        for column, spec in schema.columns.items():
            if spec.kind in (ColumnKind.KEY, ColumnKind.IDENTIFIER):
                continue
            name = spec.generator if spec.generator is not None else self._default(spec.kind)
            if name is None:
                continue
            if name not in chosen:
                unknown.append(f"{column} -> {name}")
                continue
            chosen[name].append(column)
        if unknown:
            raise ConfigError(
                f"schema.yaml names generators that are not registered: {', '.join(unknown)} "
                f"(registered: {', '.join(self._factories)})"
            )
        out: list[Instance] = []
        for name, columns in chosen.items():
            if not columns:
                continue
            if self.get(name).joint:
                out.append(Instance(name, tuple(columns), joint=True))
            else:
                out.extend(Instance(name, (column,), joint=False) for column in columns)
        return out

    def _default(self, kind: ColumnKind) -> str | None:
        for name in self._factories:
            if kind in self.get(name).kinds:
                return name
        return None


__all__ = ["FitContext", "Generator", "Instance", "Progress", "Registry", "SampleContext"]
