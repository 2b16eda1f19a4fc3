"""Safe access to image cells: relative paths confined to the corpus root, tar shard members, or encoded bytes.

An image cell is a path relative to the corpus root (``images/r1.png``), a member of a WebDataset-style tar
shard under the root (``images/shard-000012.tar#r1.png``: the shard's path, ``#``, the member's name), or the
encoded bytes of a PNG or JPEG file (Parquet binary, or a ``data:image/...;base64,`` string in JSONL). A path is
checked *before* anything is opened: absolute paths, ``..`` components and symlinks that lead outside the root
are refused, so a crafted corpus cannot make privsynth read ``/etc/passwd``. Tar members are read in place from
an index of the shard (:mod:`privsynth.data.tarshards`; never extracted); only plain regular files are read.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from PIL import Image, UnidentifiedImageError

DATA_URI_PREFIX = "data:image/"
TAR_MEMBER = ".tar#"
"""What separates a tar shard's path from a member's name in an image cell (``shard-0001.tar#r1.png``)."""


@dataclass(frozen=True)
class ImageLimits:
    """Upper bounds that protect against oversized or decompression-bomb images."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096


class ImageCellError(ValueError):
    """An image cell cannot be used; ``code`` and the message say why (never the cell's value)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def checked_path(root: Path, value: str) -> Path:
    """Resolve a relative image path inside ``root``; raise :class:`ImageCellError` if it could escape.

    >>> checked_path(Path("/data/corpus"), "../../etc/passwd")
    Traceback (most recent call last):
    ...
    privsynth.data.images.ImageCellError: image path leaves the corpus root; use a path inside the corpus folder
    """
    if "\x00" in value or value.strip() == "":
        raise ImageCellError("image-path", "image path is empty or contains a NUL byte")
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or value.startswith(("/", "\\")):
        raise ImageCellError("image-path", "image path is absolute; store it relative to the corpus root")
    if ".." in posix.parts or ".." in windows.parts:
        raise ImageCellError("image-path", "image path leaves the corpus root; use a path inside the corpus folder")
    base = root.resolve()
    target = (base / posix).resolve()
    if target != base and base not in target.parents:
        # a symlink inside the corpus pointing outside it
        raise ImageCellError("image-path", "image path leaves the corpus root through a link; copy the file in")
    return target


def decode_data_uri(value: str) -> bytes:
    """Bytes of a ``data:image/png;base64,...`` string (how JSONL stores encoded images)."""
    header, _, payload = value.partition(",")
    if not header.startswith(DATA_URI_PREFIX) or not header.endswith(";base64"):
        raise ImageCellError("image-encoding", "image data URI must look like data:image/png;base64,...")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageCellError("image-encoding", "image data URI holds invalid base64") from None


def encode_data_uri(data: bytes) -> str:
    """The ``data:`` URI JSONL uses for encoded image bytes."""
    kind = "jpeg" if data[:3] == b"\xff\xd8\xff" else "png"
    return f"{DATA_URI_PREFIX}{kind};base64,{base64.b64encode(data).decode('ascii')}"


def read_cell_bytes(root: Path, value: object, limits: ImageLimits) -> bytes:
    """The encoded bytes behind an image cell, after every safety check."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif isinstance(value, str) and value.startswith("data:"):
        data = decode_data_uri(value)
    elif isinstance(value, str) and TAR_MEMBER in value:
        shard, member = split_member(value)
        data = _read_member(checked_path(root, shard), member, limits)
    elif isinstance(value, str):
        path = checked_path(root, value)
        if path.exists() and not path.is_file():
            raise ImageCellError(
                "image-special", "image path is not a regular file (a folder, FIFO or device); point it at a PNG/JPEG"
            )
        if not path.is_file():
            raise ImageCellError("image-missing", "image file not found; check the path is relative to the corpus root")
        if path.stat().st_size > limits.max_bytes:
            raise ImageCellError(
                "image-oversized", f"image file is larger than {limits.max_bytes} bytes; downscale it first"
            )
        data = path.read_bytes()
    else:
        raise ImageCellError("image-type", "image cell must be a relative path or encoded image bytes")
    if len(data) > limits.max_bytes:
        raise ImageCellError("image-oversized", f"image is larger than {limits.max_bytes} bytes; downscale it first")
    return data


def split_member(value: str) -> tuple[str, str]:
    """The tar shard's path and the member's name of a ``shard.tar#member`` image cell.

    >>> split_member("images/shard-000012.tar#r1.png")
    ('images/shard-000012.tar', 'r1.png')
    """
    head, _, member = value.rpartition(TAR_MEMBER)
    if not member:
        raise ImageCellError("image-path", "image cell names a tar shard but no member after '#'")
    return head + ".tar", member


def _read_member(path: Path, name: str, limits: ImageLimits) -> bytes:
    from privsynth.data import tarshards

    if not path.is_file():
        raise ImageCellError(
            "image-missing", "image tar shard not found; check the path is relative to the corpus root"
        )
    try:
        found = tarshards.member(path, name)
    except tarshards.ShardError as exc:
        raise ImageCellError("image-tar", f"image shard cannot be read: {exc}") from None
    if found is None:
        raise ImageCellError("image-missing", "image not found in its tar shard; check the name after '#'")
    if not found.regular:
        raise ImageCellError(
            "image-special", "image in the tar shard is a link, folder or sparse file, not a plain file; store the file"
        )
    if found.size > limits.max_bytes:
        raise ImageCellError(
            "image-oversized", f"image file is larger than {limits.max_bytes} bytes; downscale it first"
        )
    return tarshards.read_member(path, found)


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Decode PNG/JPEG bytes fully, refusing corrupt, non-PNG/JPEG and oversized images."""
    try:
        with warnings.catch_warnings():
            # PIL warns before it raises on decompression bombs; the size check below is ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
            width, height = image.size
            if width * height > limits.max_pixels:
                raise ImageCellError(
                    "image-oversized", f"image has {width}x{height} pixels, above the limit of {limits.max_pixels}"
                )
            image.load()
    except ImageCellError:
        raise
    except Image.DecompressionBombError:
        raise ImageCellError(
            "image-oversized", f"image declares more pixels than the limit of {limits.max_pixels}; downscale it"
        ) from None
    except UnidentifiedImageError:
        raise ImageCellError("image-corrupt", "image is not a readable PNG or JPEG; re-export the file") from None
    except ValueError as exc:
        if "too large" in str(exc).lower():  # PIL's guard against a PNG text chunk that inflates without end
            raise ImageCellError("image-oversized", "image holds a compressed chunk too large to decode") from None
        raise ImageCellError("image-corrupt", "image is truncated or corrupt; re-export the file") from None
    except (OSError, SyntaxError):
        raise ImageCellError("image-corrupt", "image is truncated or corrupt; re-export the file") from None
    return image


def load_image(root: Path, value: object, limits: ImageLimits | None = None) -> Image.Image:
    """Open an image cell safely (path confined to ``root``, or bytes)."""
    lim = limits if limits is not None else ImageLimits()
    return decode_image(read_cell_bytes(root, value, lim), lim)


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of an image, deterministic for equal pixels."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
