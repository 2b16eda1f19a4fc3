"""Release manifests: SHA-256 of every file, provenance, optional Ed25519 signature, and verification.

``manifest.json`` lists every file of the release with its size and SHA-256, plus what produced it. A signature
(``manifest.sig.json``) covers the exact bytes of ``manifest.json``. :func:`verify_release` recomputes every hash,
refuses missing or extra files, and checks the signature against a public key the verifier trusts.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from privsynth.data import integrity
from privsynth.errors import ConfigError, IntegrityError

MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.json.sha256"
SIGNATURE = "manifest.sig.json"
UNHASHED = {MANIFEST, MANIFEST_DIGEST, SIGNATURE}


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {sha256, bytes}}`` for every file of a release except the manifest and signature."""
    return integrity.file_table(folder, skip=UNHASHED)


def canonical_json(payload: Any) -> bytes:
    """The bytes written for (and signed over) a manifest."""
    return (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """``manifest.json`` plus ``manifest.json.sha256``, so a changed byte in the manifest itself is caught too."""
    raw = canonical_json(manifest)
    (folder / MANIFEST).write_bytes(raw)
    (folder / MANIFEST_DIGEST).write_text(f"{hashlib.sha256(raw).hexdigest()}  {MANIFEST}\n", encoding="utf-8")


def generate_keypair(private_out: Path, public_out: Path) -> None:
    """An Ed25519 key pair as PEM files (private key owner-only)."""
    key = Ed25519PrivateKey.generate()
    private_out.parent.mkdir(parents=True, exist_ok=True)
    private_out.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private_out.chmod(0o600)
    public_out.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable unencrypted PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: expected an Ed25519 key ('privsynth keygen' makes one)")
    return key


def _load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable PEM public key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: expected an Ed25519 public key")
    return key


def check_signing_key(path: Path) -> None:
    """Raise :class:`ConfigError` now if ``path`` is not an Ed25519 private key (checked before a run spends)."""
    _load_private(path)


def sign_manifest(folder: Path, private_key: Path) -> None:
    """Write ``manifest.sig.json``: an Ed25519 signature over the bytes of ``manifest.json``."""
    key = _load_private(private_key)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signature = key.sign((folder / MANIFEST).read_bytes())
    (folder / SIGNATURE).write_text(
        json.dumps(
            {
                "algorithm": "Ed25519",
                "signed_file": MANIFEST,
                "public_key": base64.b64encode(public).decode("ascii"),
                "public_key_sha256": hashlib.sha256(public).hexdigest(),
                "signature": base64.b64encode(signature).decode("ascii"),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )


@dataclass
class Verification:
    """Result of :func:`verify_release`: ok when no problem was found."""

    files: int = 0
    problems: list[str] = field(default_factory=list)
    signature: str = "none"

    @property
    def ok(self) -> bool:
        """No changed, missing or extra file, and a valid signature when one was checked."""
        return not self.problems


def verify_release(folder: Path, *, public_key: Path | None = None) -> Verification:
    """Re-check every hash (and the signature). Problems name files, never contents."""
    result = Verification()
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise IntegrityError(f"{folder}: no {MANIFEST}; not a privsynth release")
    raw = manifest_path.read_bytes()
    digest_path = folder / MANIFEST_DIGEST
    if not digest_path.is_file():
        result.problems.append(f"missing file: {MANIFEST_DIGEST}")
    elif digest_path.read_text(encoding="utf-8").split()[:1] != [hashlib.sha256(raw).hexdigest()]:
        result.problems.append(f"changed file: {MANIFEST} (its SHA-256 no longer matches {MANIFEST_DIGEST})")
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError:
        raise IntegrityError(f"{folder}: {MANIFEST} is not valid JSON (changed or corrupted)") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise IntegrityError(f"{folder}: {MANIFEST} has no file table (changed or corrupted)")
    listed: dict[str, dict[str, Any]] = {k: v if isinstance(v, dict) else {} for k, v in files.items()}
    result.files = len(listed)
    result.problems.extend(integrity.compare_files(listed, integrity.scan_folder(folder, skip=UNHASHED)))
    signature_path = folder / SIGNATURE
    if signature_path.is_file():
        try:
            envelope = json.loads(signature_path.read_text(encoding="utf-8"))
            key_bytes = base64.b64decode(envelope["public_key"])
            embedded = Ed25519PublicKey.from_public_bytes(key_bytes)
            signature = base64.b64decode(envelope["signature"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            result.problems.append(f"{SIGNATURE} is malformed (changed or corrupted)")
            result.signature = "INVALID"
            return result
        trusted = _load_public(public_key) if public_key is not None else None
        key = trusted if trusted is not None else embedded
        if (
            trusted is not None
            and trusted.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) != key_bytes
        ):
            result.problems.append("signature was made with another key than --public-key")
        try:
            key.verify(signature, raw)
            result.signature = (
                "valid (trusted key)" if trusted is not None else "valid (embedded key; pass --public-key to trust it)"
            )
        except InvalidSignature:
            result.problems.append("signature does not match manifest.json")
            result.signature = "INVALID"
    elif public_key is not None:
        result.problems.append("--public-key given but the release is not signed")
    return result
