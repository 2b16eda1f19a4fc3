"""An index of a WebDataset-style tar shard: where each member's bytes are, read header by header with limits.

WebDataset shards are plain, uncompressed POSIX tar files. privsynth never extracts them: it walks the 512-byte
headers once (ustar, GNU long names and pax ``path``/``size`` records), keeps each member's data offset and size,
and reads a member by seeking to it. Written here rather than with :mod:`tarfile` so that a crafted shard cannot
exhaust memory or CPU (extended headers are capped, no regular expression runs on them) and so that only plain
regular files are ever read: links, folders, devices and sparse members are indexed as "not a file".
"""

from __future__ import annotations

import functools
import io
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

BLOCK = 512
MAX_MEMBERS = 2_000_000
"""Members indexed per shard at most (a WebDataset shard holds thousands)."""
MAX_EXTENDED = 64 * 1024
"""Bytes of one pax or GNU long-name header at most."""
_REGULAR = {b"0", b"\x00", b"7"}
_EXTENDED = {b"x", b"L", b"g", b"K"}


class ShardError(ValueError):
    """The file is not a readable uncompressed tar shard (the message says why; never a member's content)."""


@dataclass(frozen=True)
class Member:
    """Where a member's bytes are, and whether it is a plain regular file."""

    offset: int
    size: int
    regular: bool


def _octal(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for large numbers
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ShardError("a tar header holds a malformed number: the shard is damaged or not a tar file") from None


def _checksum_ok(header: bytes) -> bool:
    stored = _octal(header[148:156])
    computed = sum(header[:148]) + 8 * 32 + sum(header[156:])
    return stored == computed


def _pax(data: bytes) -> dict[str, str]:
    """``path`` and ``size`` from pax records (``<length> <key>=<value>`` lines; others ignored)."""
    out: dict[str, str] = {}
    position = 0
    while position < len(data):
        space = data.find(b" ", position, position + 20)
        if space < 0:
            break
        try:
            length = int(data[position:space])
        except ValueError:
            raise ShardError("a pax header record is malformed: the shard is damaged") from None
        if length <= 0 or position + length > len(data):
            raise ShardError("a pax header record is malformed: the shard is damaged")
        record = data[space + 1 : position + length].rstrip(b"\n")
        key, _, value = record.partition(b"=")
        if key in (b"path", b"size"):
            out[key.decode("ascii")] = value.decode("utf-8", "replace")
        position += length
    return out


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def read_index(path: Path) -> dict[str, Member]:
    """Every member of the shard at ``path`` by name (a later member of the same name wins, as in ``tar``)."""
    total = path.stat().st_size
    members: dict[str, Member] = {}
    long_name: str | None = None
    pax: dict[str, str] = {}
    with path.open("rb") as handle:
        position = 0
        while True:
            handle.seek(position)
            header = handle.read(BLOCK)
            if position == 0 and (header[:2] == b"\x1f\x8b" or header[:3] == b"BZh" or header[:4] == b"\xfd7zX"):
                raise ShardError("the shard is compressed; repack it as a plain tar ('tar cf', no compression)")
            if not header or header == bytes(BLOCK):
                break  # the end-of-archive blocks (or a missing end: what was indexed is kept)
            if len(header) < BLOCK:
                raise ShardError("the tar shard ends inside a header: it was cut short; copy it again")
            if not _checksum_ok(header):
                raise ShardError("a tar header's checksum is wrong: the file is compressed, damaged or not a tar")
            kind = header[156:157]
            size = _octal(header[124:136])
            data_at = position + BLOCK
            if kind in _EXTENDED:
                if size > MAX_EXTENDED:
                    raise ShardError(f"an extended tar header is larger than {MAX_EXTENDED} bytes; repack the shard")
                handle.seek(data_at)
                extended = handle.read(size)
                if kind == b"x":
                    pax = _pax(extended)
                elif kind == b"L":
                    long_name = extended.split(b"\x00", 1)[0].decode("utf-8", "replace")
                position = data_at + _padded(size)
                continue
            name = pax.get("path") or long_name
            if name is None:
                base = header[0:100].split(b"\x00", 1)[0]
                prefix = header[345:500].split(b"\x00", 1)[0] if header[257:262] == b"ustar" else b""
                name = (prefix + b"/" + base if prefix else base).decode("utf-8", "replace")
            if "size" in pax:
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise ShardError("a pax size record is malformed: the shard is damaged") from None
            if data_at + size > total:
                raise ShardError("the tar shard ends inside a member: it was cut short; copy it again")
            regular = kind in _REGULAR
            members[name.removeprefix("./")] = Member(data_at, size if regular else 0, regular)
            if len(members) > MAX_MEMBERS:
                raise ShardError(f"the tar shard has more than {MAX_MEMBERS} members; split it")
            long_name, pax = None, {}
            # links, folders and devices carry no data; a sparse member's size is its stored data
            position = data_at + (_padded(size) if kind not in (b"1", b"2", b"5", b"3", b"4", b"6") else 0)
    return members


@functools.lru_cache(maxsize=256)
def _cached(path: str, mtime_ns: int, size: int) -> dict[str, Member]:
    del mtime_ns, size  # the cache key: a replaced shard is indexed again
    return read_index(Path(path))


def member(path: Path, name: str) -> Member | None:
    """The member ``name`` of the shard at ``path`` (its index is cached per shard version), or ``None``."""
    stat = path.stat()
    return _cached(str(path), stat.st_mtime_ns, stat.st_size).get(name.removeprefix("./"))


def read_member(path: Path, found: Member) -> bytes:
    """A regular member's bytes."""
    with path.open("rb") as handle:
        handle.seek(found.offset)
        return handle.read(found.size)


def write_shard(path: Path, members: Iterable[tuple[str, bytes]]) -> int:
    """Write ``(name, bytes)`` pairs as a plain tar shard at ``path``; returns how many were written.

    Headers carry nothing but the name and size: time 0, owner 0, mode 0644, no user or group names. So a shard
    depends only on its members (the same sample gives byte-identical shards on any machine and worker count)
    and tells nothing about who wrote it or when. Names must be unique: a repeated one would hide the first.
    """
    seen: set[str] = set()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members:
            if name in seen or not name or name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"tar member name {name!r} is repeated, empty or leaves the shard")
            seen.add(name)
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data))
    return len(seen)


__all__ = [
    "MAX_EXTENDED",
    "MAX_MEMBERS",
    "Member",
    "ShardError",
    "member",
    "read_index",
    "read_member",
    "write_shard",
]
