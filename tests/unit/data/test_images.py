from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from privsynth.data.images import (
    ImageCellError,
    ImageLimits,
    checked_path,
    decode_data_uri,
    encode_data_uri,
    encode_png,
    load_image,
)


@pytest.mark.parametrize(
    "value",
    [
        "../../etc/passwd",
        "images/../../secret.png",
        "/etc/passwd",
        "\\\\server\\share\\x.png",
        "C:\\Windows\\x.png",
        "C:x.png",
        "..\\..\\x.png",
        "",
        "   ",
        "a\x00b.png",
    ],
)
def test_unsafe_paths_are_refused_before_opening(tmp_path: Path, value: str) -> None:
    with pytest.raises(ImageCellError) as info:
        checked_path(tmp_path, value)
    assert info.value.code == "image-path"


def test_symlink_leading_outside_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(encode_png(Image.new("L", (4, 4))))
    (root / "link.png").symlink_to(outside)
    with pytest.raises(ImageCellError, match="through a link"):
        checked_path(root, "link.png")


@pytest.mark.parametrize("value", ["images/a.png", "a.png", "deep/er/a b.png", "./a.png"])
def test_safe_relative_paths_resolve_inside_the_root(tmp_path: Path, value: str) -> None:
    assert tmp_path.resolve() in checked_path(tmp_path, value).parents


def test_load_image_from_path_bytes_and_data_uri(tmp_path: Path) -> None:
    image = Image.new("L", (5, 3), color=77)
    data = encode_png(image)
    (tmp_path / "a.png").write_bytes(data)
    for cell in ("a.png", data, encode_data_uri(data)):
        loaded = load_image(tmp_path, cell)
        assert loaded.size == (5, 3)
        assert loaded.getpixel((0, 0)) == 77


@pytest.mark.parametrize(
    ("cell", "code"),
    [
        (b"not an image at all", "image-corrupt"),
        (encode_png(Image.new("L", (8, 8)))[:40], "image-corrupt"),
        ("missing.png", "image-missing"),
        (123, "image-type"),
        ("data:image/png;base64,@@@", "image-encoding"),
        ("data:text/html,hello", "image-encoding"),
    ],
)
def test_broken_cells_have_a_code(tmp_path: Path, cell: object, code: str) -> None:
    with pytest.raises(ImageCellError) as info:
        load_image(tmp_path, cell)
    assert info.value.code == code


def test_gif_is_refused_even_if_pillow_could_read_it(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="GIF")
    with pytest.raises(ImageCellError, match="PNG or JPEG"):
        load_image(tmp_path, buffer.getvalue())


def test_oversized_images_are_refused(tmp_path: Path) -> None:
    data = encode_png(Image.new("L", (100, 100)))
    with pytest.raises(ImageCellError, match="pixels"):
        load_image(tmp_path, data, ImageLimits(max_pixels=99 * 99))
    with pytest.raises(ImageCellError, match="larger than"):
        load_image(tmp_path, data, ImageLimits(max_bytes=10))
    (tmp_path / "big.png").write_bytes(data)
    with pytest.raises(ImageCellError, match="larger than"):
        load_image(tmp_path, "big.png", ImageLimits(max_bytes=10))


def test_data_uri_round_trip() -> None:
    data = encode_png(Image.new("RGB", (2, 2)))
    assert decode_data_uri(encode_data_uri(data)) == data
    assert encode_data_uri(b"\xff\xd8\xff rest").startswith("data:image/jpeg;base64,")


def _png_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_too_large_not_unreadable(tmp_path: Path) -> None:
    # Before: a 100000 x 100000 PNG of a few bytes was reported as "not a readable PNG".
    with pytest.raises(ImageCellError, match="more pixels than the limit") as caught:
        load_image(tmp_path, _png_claiming(100_000, 100_000))
    assert caught.value.code == "image-oversized"


def test_a_fifo_in_place_of_an_image_is_named_as_such(tmp_path: Path) -> None:
    # Before: a FIFO was reported as "not found" (and opening it could block forever).
    import os

    os.mkfifo(tmp_path / "scan.png")
    with pytest.raises(ImageCellError, match="not a regular file") as caught:
        load_image(tmp_path, "scan.png")
    assert caught.value.code == "image-special"


def _shard(path: Path, members: dict[str, bytes]) -> Path:
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_image_is_read_in_place_from_a_webdataset_tar_shard(tmp_path: Path) -> None:
    first, second = encode_png(Image.new("L", (4, 4), 10)), encode_png(Image.new("L", (6, 2), 200))
    (tmp_path / "images").mkdir()
    _shard(tmp_path / "images" / "shard-000000.tar", {"r1.png": first, "./r2.png": second})
    assert load_image(tmp_path, "images/shard-000000.tar#r1.png").size == (4, 4)
    assert load_image(tmp_path, "images/shard-000000.tar#r2.png").size == (6, 2)  # "./" prefixes match
    assert not any(p.suffix == ".png" for p in tmp_path.rglob("*"))  # nothing extracted


def test_tar_shard_cells_fail_clearly(tmp_path: Path) -> None:
    import tarfile

    data = encode_png(Image.new("L", (4, 4)))
    _shard(tmp_path / "s.tar", {"a.png": data})
    with tarfile.open(tmp_path / "links.tar", "w") as tar:
        link = tarfile.TarInfo("evil.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with tarfile.open(tmp_path / "packed.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "s.tar", arcname="a.png")
    (tmp_path / "packed.tar").write_bytes((tmp_path / "packed.tar.gz").read_bytes())
    (tmp_path / "cut.tar").write_bytes((tmp_path / "s.tar").read_bytes()[:530])  # ends inside a member
    cases = {
        "cut.tar#a.png": "image-tar",
        "s.tar#missing.png": "image-missing",
        "absent.tar#a.png": "image-missing",
        "links.tar#evil.png": "image-special",
        "packed.tar#a.png": "image-tar",
        "../s.tar#a.png": "image-path",
        "s.tar#": "image-path",
    }
    for cell, code in cases.items():
        with pytest.raises(ImageCellError) as info:
            load_image(tmp_path, cell)
        assert info.value.code == code, cell
        assert "passwd" not in str(info.value)
    with pytest.raises(ImageCellError) as info:
        load_image(tmp_path, "s.tar#a.png", ImageLimits(max_bytes=10))
    assert info.value.code == "image-oversized"


def test_a_corpus_with_images_in_tar_shards_validates_and_copies_only_its_members(
    demo_dir: Path, tmp_path: Path
) -> None:
    import tarfile

    from privsynth.data.corpus import Corpus, corpora_equal, read_corpus, write_corpus
    from privsynth.data.schema import ColumnKind
    from privsynth.data.validate import coerce_records

    corpus = read_corpus(demo_dir)
    column = corpus.schema.names(ColumnKind.IMAGE)[0]
    records = corpus.records.copy()
    root = tmp_path / "sharded"
    (root / "shards").mkdir(parents=True)
    cells: list[object] = []
    for i, (key, value) in enumerate(zip(records[corpus.schema.key], records[column], strict=True)):
        if value is None:
            cells.append(None)
            continue
        shard = root / "shards" / f"scans-{i % 2:06d}.tar"
        with tarfile.open(shard, "a") as tar:
            data = (corpus.root / str(value)).read_bytes()
            info = tarfile.TarInfo(f"{key}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        cells.append(f"shards/{shard.name}#{key}.png")
    records[column] = cells
    sharded = Corpus(records=records, schema=corpus.schema, root=root)
    _, problems = coerce_records(records, corpus.schema, root)
    assert problems == []
    assert corpora_equal(sharded, corpus)  # images compared byte for byte
    # a member no record points to (another person's scan) must not travel with a copy of the corpus
    with tarfile.open(root / "shards" / "scans-000000.tar", "a") as tar:
        stray = b"not referenced by any record"
        info = tarfile.TarInfo("someone-else.png")
        info.size = len(stray)
        tar.addfile(info, io.BytesIO(stray))
    for fmt in ("parquet", "csv"):
        copy = read_corpus(write_corpus(sharded, tmp_path / f"copy-{fmt}", table_format=fmt))
        assert not list(copy.root.rglob("*.tar"))
        assert all(b"not referenced" not in f.read_bytes() for f in copy.root.rglob("*") if f.is_file())
        assert corpora_equal(copy, corpus)
