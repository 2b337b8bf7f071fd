"""Model bundles: a directory with the model, a manifest and a detached Ed25519 signature.

Layout (docs/models.md)::

    bundle/
      manifest.json     what the model is: name, version, creation data, feature spec, scaler,
                        score calibration, training report, and the SHA-256 of every other file
      model.onnx        the model (input: standardised features; output: raw score)
      signature.json    {"algorithm": "ed25519", "key_id": ..., "signature": base64}

The signature covers the exact bytes of manifest.json, and the manifest pins every other file by
SHA-256, so one signature protects the whole directory. Verification reads each file once into
memory, checks it, and the loader uses those same bytes: a file swapped between check and use is
never loaded. Files not named in the manifest are refused (nothing unsigned rides along).

Keys are PEM files (`keygen`): PKCS#8 private key (mode 0600) and SubjectPublicKeyInfo public key.
A key id is the first 16 hex digits of the SHA-256 of the raw 32-byte public key.

Only `cryptography` is imported here (lazily, in the functions that need it); never onnxruntime.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
SIGNATURE = "signature.json"
FORMAT = 1

# Bundle model kinds (models/training/detectors.py fits them): a manifest's `name`, so alerts and
# the status say `<kind>@<version>`. The "bundle:" prefix keeps them apart from the on-device
# detectors of models/registry.py, whose names are plain identifiers: registry "pca" is a streaming
# PCA, bundle:pca a batch PCA scored by Hotelling T2 + Q. The short names are what `model train
# --detector` takes, and what bundles written before the prefix call their kind: `kind()` reads
# them as the prefixed kind, so those bundles load as before.
KINDS = ("bundle:pca", "bundle:iforest", "bundle:autoencoder")
SHORT_NAMES = {kind.split(":", 1)[1]: kind for kind in KINDS}


def kind(name: str) -> str:
    """The model kind a manifest `name` means: a short pre-prefix name ("pca") maps to its kind
    ("bundle:pca"); any other name is returned as it is.

    >>> kind("pca"), kind("bundle:iforest"), kind("my-model")
    ('bundle:pca', 'bundle:iforest', 'my-model')
    """
    return SHORT_NAMES.get(name, name)


class BundleError(Exception):
    """A bundle that must not be loaded; the message is the reason an operator reads."""


@dataclass(frozen=True)
class Bundle:
    """A bundle whose signature and file hashes were verified."""

    path: str
    manifest: dict
    files: dict  # name -> bytes (as verified)
    key_id: str

    @property
    def model_bytes(self) -> bytes:
        return self.files[self.manifest["model"]["file"]]

    @property
    def version(self) -> str:
        return self.manifest["version"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- keys ---------------------------------------------------------------------------------------------
def keygen(prefix: str) -> tuple[str, str]:
    """Write PREFIX.key (private, 0600) and PREFIX.pub; returns their paths."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    key_path, pub_path = f"{prefix}.key", f"{prefix}.pub"
    for path in (key_path, pub_path):
        if os.path.exists(path):
            raise BundleError(f"{path} exists; refusing to overwrite a key")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(priv)
    Path(pub_path).write_bytes(pub)
    return key_path, pub_path


def _raw_public(pub) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(pub) -> str:
    return sha256(_raw_public(pub))[:16]


def load_public_key(path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as exc:
        raise BundleError(f"public key {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise BundleError(f"public key {path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"public key {path}: not an Ed25519 key")
    return key


def load_private_key(path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise BundleError(f"private key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise BundleError(f"private key {path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"private key {path}: not an Ed25519 key")
    return key


# -- writing and signing --------------------------------------------------------------------------------
def write(path: str, manifest: dict, files: dict[str, bytes]) -> str:
    """Write a new, unsigned bundle directory: `files` plus a manifest that pins them."""
    os.makedirs(path, exist_ok=True)
    for name in files:
        if name in (MANIFEST, SIGNATURE) or "/" in name or name.startswith("."):
            raise BundleError(f"invalid bundle file name {name!r}")
    for name, data in files.items():
        Path(path, name).write_bytes(data)
    manifest = {**manifest, "format": FORMAT, "files": {n: sha256(d) for n, d in sorted(files.items())}}
    Path(path, MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    stale = Path(path, SIGNATURE)
    if stale.exists():
        stale.unlink()  # a re-written bundle is unsigned until signed again
    return path


def sign(path: str, key_path: str) -> str:
    """Sign the bundle's manifest with the Ed25519 private key; returns the key id."""
    key = load_private_key(key_path)
    manifest = _read(path, MANIFEST)
    _parse_manifest(manifest)
    _check_files(path, json.loads(manifest))  # never sign a directory that does not match its manifest
    kid = key_id(key.public_key())
    sig = {"algorithm": "ed25519", "key_id": kid, "signature": base64.b64encode(key.sign(manifest)).decode()}
    Path(path, SIGNATURE).write_text(json.dumps(sig, indent=2) + "\n")
    return kid


# -- verifying and loading --------------------------------------------------------------------------------
def _read(path: str, name: str) -> bytes:
    try:
        return Path(path, name).read_bytes()
    except FileNotFoundError:
        what = "missing signature" if name == SIGNATURE else f"missing {name}"
        raise BundleError(f"{path}: {what}") from None
    except OSError as exc:
        raise BundleError(f"{path}/{name}: {exc.strerror or exc}") from None


def _parse_manifest(data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise BundleError(f"{MANIFEST}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{MANIFEST}: unsupported bundle format {manifest.get('format') if isinstance(manifest, dict) else None!r}")
    for key in ("name", "version", "model", "features", "scaler", "calibration", "files"):
        if key not in manifest:
            raise BundleError(f"{MANIFEST}: missing key {key!r}")
    return manifest


def _check_files(path: str, manifest: dict, read=None, present=None) -> dict:
    read = read or (lambda name: _read(path, name))
    files = {}
    listed = manifest["files"]
    if not isinstance(listed, dict) or manifest["model"].get("file") not in listed:
        raise BundleError(f"{MANIFEST}: the model file is not pinned in 'files'")
    for name, digest in listed.items():
        if "/" in name or name.startswith("."):
            raise BundleError(f"{MANIFEST}: invalid file name {name!r}")
        data = read(name)
        if sha256(data) != digest:
            raise BundleError(f"{name}: SHA-256 mismatch (file changed after signing)")
        files[name] = data
    extra = sorted(set(os.listdir(path) if present is None else present) - set(listed) - {MANIFEST, SIGNATURE})
    if extra:
        raise BundleError(f"files not covered by the signature: {', '.join(extra)}")
    return files


def signed_by(keys, signature: bytes, data: bytes) -> str | None:
    """The id of the key in `keys` (Ed25519 public keys) whose signature over `data` `signature` is,
    or None. Shared by bundles and signed commands (agent/command_envelope.py)."""
    from cryptography.exceptions import InvalidSignature

    for key in keys:
        try:
            key.verify(signature, data)
            return key_id(key)
        except InvalidSignature:
            continue
    return None


def not_verified(keys, claimed: str, what: str) -> str:
    """Why no key in `keys` verified a signature that says it was made by key `claimed`: `what`
    changed after signing (the key is trusted), or the key is not trusted."""
    if claimed in {key_id(k) for k in keys}:
        return f"{what} changed after signing"
    return f"signed by key {claimed}, which is not trusted"


def verify(path: str, public_keys, files: dict[str, bytes] | None = None) -> Bundle:
    """Verify a bundle against trusted public keys (objects or PEM paths); raise BundleError with
    the reason, or return the verified `Bundle`. `files` ({name: bytes}, every file of the bundle):
    a bundle already in memory (decrypted from an encrypted store); `path` then only names it."""

    path = str(path)
    if files is None and not os.path.isdir(path):
        raise BundleError(f"{path}: not a bundle directory")
    read = (lambda name: _read(path, name)) if files is None else (lambda name: _held(files, path, name))
    keys = [load_public_key(k) if isinstance(k, (str, os.PathLike)) else k for k in public_keys]
    if not keys:
        raise BundleError("no trusted public keys configured")
    sig_data = read(SIGNATURE)
    manifest_data = read(MANIFEST)
    try:
        sig = json.loads(sig_data)
        if sig.get("algorithm") != "ed25519":
            raise BundleError(f"{SIGNATURE}: unsupported algorithm {sig.get('algorithm')!r}")
        signature = base64.b64decode(sig["signature"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BundleError(f"{SIGNATURE}: malformed") from None
    signer = signed_by(keys, signature, manifest_data)
    if signer is None:
        raise BundleError(f"signature does not verify: {not_verified(keys, sig.get('key_id', '?'), 'manifest')}")
    manifest = _parse_manifest(manifest_data)
    return Bundle(path, manifest, _check_files(path, manifest, read, None if files is None else list(files)), signer)


def _held(files: dict, path: str, name: str) -> bytes:
    if name not in files:
        raise BundleError(f"{path}: {'missing signature' if name == SIGNATURE else f'missing {name}'}")
    return files[name]


def read_unverified(path: str) -> dict:
    """The manifest, for `model info` (no signature check; the caller says so)."""
    return _parse_manifest(_read(str(path), MANIFEST))
