"""The tar shard index against Python's own tarfile, in every header format, and its limits on crafted shards."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from privsynth.data.tarshards import MAX_EXTENDED, ShardError, read_index, read_member, write_shard

LONG = "records/" + "deep/" * 30 + "R000123.png"  # longer than the 100 bytes of a plain header's name


def _write(path: Path, members: dict[str, bytes], fmt: int) -> Path:
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_every_member_is_found_where_tarfile_finds_it(tmp_path: Path, fmt: int) -> None:
    members = {f"R{i:06d}.png": bytes([i]) * (i * 37 % 900 + 1) for i in range(40)}
    if fmt != tarfile.USTAR_FORMAT:
        members[LONG] = b"long name"
    else:
        members["prefix/" * 14 + "R9.png"] = b"ustar prefix field"  # name split into prefix + name
    path = _write(tmp_path / "shard.tar", members, fmt)
    index = read_index(path)
    assert set(index) == set(members)
    for name, data in members.items():
        assert index[name].regular
        assert read_member(path, index[name]) == data


def test_links_folders_and_sparse_members_are_not_files(tmp_path: Path) -> None:
    path = tmp_path / "odd.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind in (("link.png", tarfile.SYMTYPE), ("hard.png", tarfile.LNKTYPE), ("dir", tarfile.DIRTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "R1.png" if kind != tarfile.DIRTYPE else ""
            tar.addfile(info)
        data = b"after the links"
        info = tarfile.TarInfo("R1.png")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    index = read_index(path)
    assert not index["link.png"].regular and not index["hard.png"].regular and not index["dir/"].regular
    assert read_member(path, index["R1.png"]) == b"after the links"  # the walk stays aligned after them


def test_crafted_shards_are_refused_without_reading_them_whole(tmp_path: Path) -> None:
    path = _write(tmp_path / "big-pax.tar", {"x" * 10: b"y"}, tarfile.PAX_FORMAT)
    raw = bytearray(path.read_bytes())
    # turn the first member's header into a pax header claiming MAX_EXTENDED + 1 bytes
    raw[156:157] = b"x"
    raw[124:136] = f"{MAX_EXTENDED + 1:011o}\x00".encode()
    raw[148:156] = b" " * 8
    raw[148:156] = f"{sum(raw[:512]):06o}\x00 ".encode()
    path.write_bytes(bytes(raw))
    with pytest.raises(ShardError, match="extended tar header"):
        read_index(path)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x01" * 2048)
    with pytest.raises(ShardError, match=r"checksum|malformed"):
        read_index(garbage)


def test_a_written_shard_reads_back_and_says_nothing_but_names_and_sizes(tmp_path: Path) -> None:
    members = [(f"syn-{i:07d}.png", bytes([i]) * (i * 53 % 700 + 1)) for i in range(25)]
    assert write_shard(tmp_path / "a.tar", members) == 25
    index = read_index(tmp_path / "a.tar")
    assert [read_member(tmp_path / "a.tar", index[name]) for name, _ in members] == [d for _, d in members]
    with tarfile.open(tmp_path / "a.tar") as tar:  # no time, owner or user name: nothing about the writer
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in tar.getmembers()} == {
            (0, 0, 0, "", "", 0o644)
        }
    write_shard(tmp_path / "b.tar", members)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


@pytest.mark.parametrize("name", ["", "/abs.png", "../up.png", "a/../../b.png"])
def test_a_shard_refuses_names_that_leave_it(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="leaves the shard"):
        write_shard(tmp_path / "x.tar", [(name, b"x")])
    with pytest.raises(ValueError, match="repeated"):
        write_shard(tmp_path / "y.tar", [("a.png", b"1"), ("a.png", b"2")])
