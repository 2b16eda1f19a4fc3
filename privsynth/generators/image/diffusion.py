"""A class-conditional denoising diffusion model for DP-SGD, after DPDM (Dockhorn et al. 2022).

The recipe that makes diffusion work under DP-SGD:

- **noise multiplicity**: each record is noised at K levels and its K denoising losses are averaged *before*
  per-record clipping (:class:`~privsynth.generators.dpsgd_draws.MultiDrawDPSGDTrainer`), which lowers the
  variance of the record's gradient at no privacy cost;
- **large batches** (thousands of records per step) so the Gaussian noise is small next to the summed signal;
- **EMA** of the weights (post-processing, free);
- EDM preconditioning and noise-level distribution (Karras et al. 2022), and a deterministic Heun sampler;
- optionally classifier-free guidance (Ho & Salimans 2022): with ``label_dropout`` > 0 the network also learns
  an unconditional denoiser (a row's class replaced by a "no class" index), and sampling with ``guidance`` w
  moves each step away from it, ``D = D(c) + w (D(c) - D(none))``: images follow their class more closely.
  Sampling is post-processing, so the weight may be chosen after training at no privacy cost.

The network is a small U-Net: GroupNorm (never BatchNorm, which mixes records), SiLU, 3x3 convolutions, the
noise level and the record's class added as an embedding in every residual block. Every weight is learned
under DP-SGD (or loaded from a *public* checkpoint); the sinusoidal noise-level features are fixed maths.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.nn import functional as F  # noqa: N812


class DiffusionConfig(BaseModel):
    """Settings of the DP diffusion model (public). The defaults are sized for a GPU; see configs/fmnist-gpu.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    width: int = Field(default=32, ge=4, le=256, description="Channels of the full-resolution level.")
    multipliers: list[int] = Field(default=[1, 2, 2], min_length=1, max_length=5, description="Channels per level.")
    blocks: int = Field(default=1, ge=1, le=4, description="Residual blocks per level.")
    noise_multiplicity: int = Field(
        default=8, ge=1, le=128, description="Noise levels per record, averaged before clipping (DPDM's K)."
    )
    ema: float = Field(default=0.999, ge=0, lt=1, description="Decay of the weights' moving average (0: none).")
    sampling_steps: int = Field(default=32, ge=2, le=1000, description="Heun steps when sampling.")
    sigma_data: float = Field(default=0.5, gt=0, description="Scale of the images (EDM's sigma_data).")
    p_mean: float = Field(default=-1.2, description="Mean of log(sigma) during training (EDM).")
    p_std: float = Field(default=1.2, gt=0, description="Spread of log(sigma) during training (EDM).")
    sigma_max: float = Field(default=80.0, gt=0)
    sigma_min: float = Field(default=0.002, gt=0)
    label_dropout: float = Field(
        default=0.0, ge=0, lt=1, description="Share of training rows whose class is hidden (enables guidance)."
    )
    guidance: float = Field(
        default=0.0, ge=0, le=20, description="Classifier-free guidance weight when sampling (needs label_dropout)."
    )
    chunk: int = Field(default=256, ge=1, description="Records per per-record-gradient call (memory vs speed).")
    device: str = Field(default="auto", description="'auto' (a GPU when there is one), 'cpu', 'cuda', 'cuda:1'...")
    tf32: bool = Field(
        default=True,
        description="On a GPU, TensorFloat-32 matrix products and convolutions (several times faster than full "
        "float32; the per-record norms are still summed in float32, so clipping holds).",
    )

    @model_validator(mode="after")
    def _guidance_needs_dropout(self) -> DiffusionConfig:
        if self.guidance > 0 and self.label_dropout == 0:
            raise ValueError(
                "diffusion.guidance needs a network that also learned to denoise without a class: "
                "set diffusion.label_dropout (e.g. 0.1) or guidance: 0"
            )
        return self

    def resolved_device(self) -> torch.device:
        """The device to train and sample on."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@contextmanager
def gpu_precision(device: torch.device, tf32: bool) -> Iterator[None]:
    """Within the block, float32 matrix products and convolutions on a GPU use TF32 when ``tf32`` (restored after).

    Privacy is unchanged: each record's gradient is clipped by the norm of the very tensor that is summed, however
    coarse its products were. Nothing changes on a CPU.
    """
    if device.type != "cuda":
        yield
        return
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class _Block(nn.Module):
    """Residual block: norm, SiLU, conv; the embedding shifts the features; norm, SiLU, conv; skip."""

    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The block's output for features ``x`` and the per-row embedding ``emb``."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Denoiser(nn.Module):
    """U-Net ``F(x, c_noise, class)`` for images ``[B, channels, H, W]`` (any H, W).

    With ``label_dropout`` > 0 in its config, class index ``classes`` means "no class" (the unconditional
    denoiser of classifier-free guidance); :attr:`null_class` is that index, or ``None``.
    """

    def __init__(self, *, channels: int, classes: int, config: DiffusionConfig) -> None:
        super().__init__()
        width, emb = config.width, 4 * config.width
        self.null_class = classes if config.label_dropout > 0 else None
        self.frequencies: torch.Tensor
        self.register_buffer("frequencies", torch.exp(-math.log(1000.0) * torch.arange(width // 2) / (width // 2)))
        self.noise_mlp = nn.Sequential(nn.Linear(2 * (width // 2), emb), nn.SiLU(), nn.Linear(emb, emb))
        self.classes = nn.Embedding(classes + (self.null_class is not None), emb)
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        widths = [width * m for m in config.multipliers]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, current = [width], width
        for level, w in enumerate(widths):
            for _ in range(config.blocks):
                self.down.append(_Block(current, w, emb))
                current = w
                skips.append(current)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(current, current, 3, stride=2, padding=1))
                skips.append(current)
        self.middle = _Block(current, current, emb)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            for _ in range(config.blocks + 1):
                self.up.append(_Block(current + skips.pop(), w, emb))
                current = w
            if level > 0:
                self.upsample.append(nn.Conv2d(current, current, 3, padding=1))
        self.out_norm, self.out = _norm(current), nn.Conv2d(current, channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]
        self.levels, self.blocks = len(widths), config.blocks

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The network's output for noisy inputs ``x`` (scaled by c_in), ``c_noise = log(sigma) / 4``, classes."""
        angles = c_noise[:, None] * 1000.0 * self.frequencies[None, :]
        emb = self.noise_mlp(torch.cat([angles.cos(), angles.sin()], dim=1)) + self.classes(labels)
        emb = F.silu(emb)
        h = self.stem(x)
        skips = [h]
        down: Iterator[nn.Module] = iter(self.down)
        downsample: Iterator[nn.Module] = iter(self.downsample)
        for level in range(self.levels):
            for _ in range(self.blocks):
                h = next(down)(h, emb)
                skips.append(h)
            if level < self.levels - 1:
                h = next(downsample)(h)
                skips.append(h)
        h = self.middle(h, emb)
        up: Iterator[nn.Module] = iter(self.up)
        upsample: Iterator[nn.Module] = iter(self.upsample)
        for level in reversed(range(self.levels)):
            for _ in range(self.blocks + 1):
                h = next(up)(torch.cat([h, skips.pop()], dim=1), emb)
            if level > 0:
                h = next(upsample)(F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))


def denoise(
    forward: nn.Module | object, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor, sigma_data: float
) -> torch.Tensor:
    """EDM-preconditioned denoiser ``D(x; sigma, class)``: the clean image's estimate. ``sigma`` is ``[B]``."""
    s = sigma[:, None, None, None]
    total = s**2 + sigma_data**2
    c_skip, c_out, c_in = sigma_data**2 / total, s * sigma_data / total.sqrt(), 1 / total.sqrt()
    out = forward(c_in * x, sigma.log() / 4, labels)  # type: ignore[operator]
    return c_skip * x + c_out * out


def denoising_loss(
    forward: object,
    images: torch.Tensor,
    labels: torch.Tensor,
    present: torch.Tensor,
    log_sigma: torch.Tensor,
    noise: torch.Tensor,
    *,
    sigma_data: float,
    hidden: torch.Tensor | None = None,
    null_class: int | None = None,
) -> torch.Tensor:
    """Per-record denoising loss ``[b]``, each averaged over its K noise draws.

    ``images [b, C, H, W]``, ``labels [b]``, ``present [b]`` (0 for a record without an image: it contributes
    nothing but still counts), ``log_sigma [b, K]``, ``noise [b, K, C, H, W]``; ``hidden [b, K]`` (bool, with
    ``null_class``) marks the rows trained without their class. The network runs once on the b x K rows,
    record-major (what :class:`~privsynth.generators.dpsgd_draws.MultiDrawDPSGDTrainer` expects).
    """
    b, k = log_sigma.shape
    clean = images.repeat_interleave(k, dim=0)
    sigma = log_sigma.reshape(-1).exp()
    noisy = clean + sigma[:, None, None, None] * noise.reshape(b * k, *images.shape[1:])
    rows_labels = labels.repeat_interleave(k)
    if hidden is not None and null_class is not None:
        rows_labels = torch.where(hidden.reshape(-1), torch.full_like(rows_labels, null_class), rows_labels)
    estimate = denoise(forward, noisy, sigma, rows_labels, sigma_data)
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    per_row = weight * ((estimate - clean) ** 2).mean(dim=(1, 2, 3))
    return per_row.view(b, k).mean(dim=1) * present


@torch.no_grad()
def heun_sample(
    network: Denoiser,
    labels: torch.Tensor,
    shape: tuple[int, int, int],
    config: DiffusionConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """EDM's deterministic Heun sampler: images ``[N, C, H, W]`` (roughly in [-1, 1]) for ``labels``.

    With ``config.guidance`` > 0 and a network trained with label dropout, each denoising is guided away from
    the unconditional one (twice the network evaluations).
    """
    device = labels.device
    steps, rho = config.sampling_steps, 7.0
    i = torch.arange(steps, device=device, dtype=torch.float64)
    lo, hi = config.sigma_min ** (1 / rho), config.sigma_max ** (1 / rho)
    sigmas = torch.cat([(hi + i / (steps - 1) * (lo - hi)) ** rho, torch.zeros(1, device=device, dtype=torch.float64)])
    x = torch.randn(len(labels), *shape, generator=generator, device=device, dtype=torch.float64) * sigmas[0]

    weight = config.guidance if network.null_class is not None else 0.0
    both = torch.cat([labels, torch.full_like(labels, network.null_class or 0)]) if weight > 0 else labels

    def d(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if weight == 0:
            return denoise(network, x.float(), sigma.float().expand(len(x)), labels, config.sigma_data).double()
        pair = denoise(network, x.float().repeat(2, 1, 1, 1), sigma.float().expand(2 * len(x)), both, config.sigma_data)
        conditional, unconditional = pair.double().chunk(2)
        return conditional + weight * (conditional - unconditional)

    for j in range(steps):
        s, s_next = sigmas[j], sigmas[j + 1]
        slope = (x - d(x, s)) / s
        x_next = x + (s_next - s) * slope
        if s_next > 0:
            x_next = x + (s_next - s) * 0.5 * (slope + (x_next - d(x_next, s_next)) / s_next)
        x = x_next
    return x.float()


__all__ = ["Denoiser", "DiffusionConfig", "denoise", "denoising_loss", "gpu_precision", "heun_sample"]
