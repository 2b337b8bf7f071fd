"""Learned baselines and installed bundles encrypted at rest (`storage.encrypt: true`).

The key is a file of at least 32 random bytes (`head -c 32 /dev/urandom`): `storage.key_file`, else
the systemd credential `model-key` (`$CREDENTIALS_DIRECTORY/model-key`, from `LoadCredentialEncrypted=`).
From it HKDF-SHA256 (RFC 5869) derives one AES-256 key per purpose (``baseline``, ``bundle``) and a
key id; the file's bytes themselves never encrypt anything.

A sealed file is ``MAGIC (8) | key id (8) | nonce (12) | AES-GCM ciphertext and tag``. The
associated data is ``pdm-agent/<role>/<sensor>``: a file copied from another sensor or another role
does not open, just like a changed one. The key id (an HKDF output, so it says nothing about the
keys) tells a wrong key (exit 2 at start, nothing touched) from a changed file (refused, moved
aside as ``<file>.refused-<UTC time>`` for inspection, learned anew).

Errors: `KeyProblem` (no key, short key, wrong key: the agent must not start), `Refused` (this file
must not be loaded). Both carry a one-line message an operator can act on.
"""

from __future__ import annotations

import os
import time

MAGIC = b"PDMSEAL1"
SUFFIX = ".sealed"
CREDENTIAL = "model-key"
KEY_BYTES_MIN = 32
ROLES = ("baseline", "bundle")
_HEADER = len(MAGIC) + 8 + 12


class KeyProblem(Exception):
    """No usable key, or the key is not the one the stored files were sealed with."""


class Refused(Exception):
    """A sealed file that does not authenticate (changed, truncated, or from another sensor/role)."""


def _derive(master: bytes, purpose: str, length: int = 32) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=b"pdm-agent/v1/" + purpose.encode()).derive(master)


class Sealer:
    """AES-256-GCM with a key per role, derived from the master key bytes (see module docstring).

    >>> s = Sealer(bytes(range(32)), "test")
    >>> blob = s.seal("baseline", "pump1", b"state")
    >>> s.open("baseline", "pump1", blob)
    b'state'
    >>> s.open("baseline", "pump2", blob)
    Traceback (most recent call last):
    agent.sealed.Refused: authentication failed: the file was changed, or it was sealed for another sensor or purpose than baseline of pump2
    """

    def __init__(self, master: bytes, source: str) -> None:
        if len(master) < KEY_BYTES_MIN:
            raise KeyProblem(f"{source} holds {len(master)} bytes; at least {KEY_BYTES_MIN} random bytes are "
                             "needed (head -c 32 /dev/urandom > FILE)")
        self.source = source
        self._keys = {role: _derive(master, role) for role in ROLES}
        self.key_id = _derive(master, "key-id", 8)

    @staticmethod
    def _aad(role: str, sensor: str) -> bytes:
        return f"pdm-agent/{role}/{sensor}".encode()

    def seal(self, role: str, sensor: str, data: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)  # random 96-bit nonces: safe far beyond the saves an agent makes (NIST SP 800-38D 8.3)
        return MAGIC + self.key_id + nonce + AESGCM(self._keys[role]).encrypt(nonce, data, self._aad(role, sensor))

    def sealed_with(self, blob: bytes) -> bytes | None:
        """The key id a blob was sealed with, or None when it is not a sealed file."""
        if len(blob) < _HEADER or not blob.startswith(MAGIC):
            return None
        return blob[len(MAGIC):len(MAGIC) + 8]

    def open(self, role: str, sensor: str, blob: bytes) -> bytes:
        """The plaintext; `KeyProblem` when sealed with another key, `Refused` when it does not authenticate."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        kid = self.sealed_with(blob)
        if kid is None:
            raise Refused("not a sealed pdm-agent file (no header)")
        if kid != self.key_id:
            raise KeyProblem(f"sealed with another key (key id {kid.hex()}; {self.source} has key id "
                             f"{self.key_id.hex()})")
        nonce = blob[len(MAGIC) + 8:_HEADER]
        try:
            return AESGCM(self._keys[role]).decrypt(nonce, blob[_HEADER:], self._aad(role, sensor))
        except InvalidTag:
            raise Refused("authentication failed: the file was changed, or it was sealed for another sensor "
                          f"or purpose than {role} of {sensor}") from None


def from_config(storage_cfg, environ=None) -> Sealer | None:
    """The sealer for `storage` settings, or None when `encrypt` is off; `KeyProblem` says why not."""
    if not storage_cfg.encrypt:
        return None
    environ = os.environ if environ is None else environ
    if storage_cfg.key_file is not None:
        path = os.path.expandvars(os.path.expanduser(str(storage_cfg.key_file)))
        source = f"storage.key_file {path}"
    elif environ.get("CREDENTIALS_DIRECTORY"):
        path = os.path.join(environ["CREDENTIALS_DIRECTORY"].split(":")[0], CREDENTIAL)
        source = f"the systemd credential {CREDENTIAL} ({path})"
    else:
        raise KeyProblem("storage.encrypt: no key: set storage.key_file, or pass the systemd credential "
                         f"{CREDENTIAL} (LoadCredentialEncrypted={CREDENTIAL}:... in the unit; see systemd/README.md)")
    try:
        with open(path, "rb") as f:
            master = f.read()
    except OSError as exc:
        raise KeyProblem(f"storage.encrypt: {source}: {exc.strerror or exc}; nothing learned was touched") from None
    try:
        return Sealer(master, source)
    except KeyProblem as exc:
        raise KeyProblem(f"storage.encrypt: {exc}") from None


def sealed_files(storage_dir: str) -> list[str]:
    """Every sealed file under the state directory (learned baselines, installed and pushed bundles)."""
    out = []
    for sub in ("models", "bundles", "pushed"):
        for root, dirs, files in os.walk(os.path.join(storage_dir, sub)):
            dirs.sort()
            out += [os.path.join(root, n) for n in sorted(files) if n.endswith(SUFFIX)]
    return out


def check_key(storage_dir: str, sealer: Sealer | None) -> None:
    """At start, before anything is written: every sealed file must have been sealed with this key.
    A wrong key is `KeyProblem` (exit 2) rather than a baseline learned anew over the old one."""
    if sealer is None:
        return
    for path in sealed_files(storage_dir):
        try:
            with open(path, "rb") as f:
                head = f.read(_HEADER)
        except OSError:
            continue
        kid = sealer.sealed_with(head)
        if kid is not None and kid != sealer.key_id:
            raise KeyProblem(f"storage.encrypt: wrong key: {path} was sealed with key id {kid.hex()}, "
                             f"{sealer.source} has key id {sealer.key_id.hex()}. Nothing was changed; start "
                             "with the key it was sealed with (or move the file away to learn anew)")


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def write(path: str, data: bytes, role: str, sensor: str, sealer: Sealer | None) -> str:
    """Write atomically (temp file, fsync, rename): sealed to `path`.sealed when `sealer` is set,
    else plain to `path`. A plain copy left from before encryption is removed once sealed."""
    target = path + SUFFIX if sealer is not None else path
    blob = sealer.seal(role, sensor, data) if sealer is not None else data
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    tmp = target + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    if sealer is not None and os.path.exists(path):
        os.unlink(path)  # the plaintext must not outlive its encrypted copy
    return target


def read(path: str, role: str, sensor: str, sealer: Sealer | None, log=None) -> bytes | None:
    """The bytes saved by `write(path, ...)`, or None when there are none to use.

    With a sealer: `path`.sealed is opened; a file that does not authenticate is moved aside to
    ``<file>.refused-<UTC time>``, logged, and `Refused` is raised with the reason and where it went
    (the caller learns anew). A plain `path` from before encryption is read (and sealed at the
    next save). Without a sealer, a sealed file cannot be read: a warning, and None.
    """
    sealed = path + SUFFIX
    if sealer is None:
        if os.path.exists(sealed) and not os.path.exists(path):
            log and log.warning(f"an encrypted {role} is stored but storage.encrypt is off; it is not read "
                                "(learning anew; the file is kept)", sensor=sensor, path=sealed)
            return None
        return _plain(path)
    try:
        with open(sealed, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        data = _plain(path)
        if data is not None and log:
            log.info(f"plain {role} found; it is encrypted at the next save", sensor=sensor, path=path)
        return data
    try:
        return sealer.open(role, sensor, blob)
    except (Refused, KeyProblem) as exc:
        aside = f"{sealed}.refused-{_stamp()}"
        try:
            os.replace(sealed, aside)
        except OSError as move:  # e.g. a read-only state directory: then nothing overwrites it either
            if log:
                log.error(f"encrypted {role} refused, not loaded; it could not be moved aside", sensor=sensor,
                          path=sealed, reason=str(exc), error=move.strerror or str(move))
            raise Refused(f"{exc}; left in place ({move.strerror or move})") from None
        if log:
            log.error(f"encrypted {role} refused; moved aside for inspection, not loaded", sensor=sensor,
                      path=sealed, moved_to=aside, reason=str(exc))
        raise Refused(f"{exc}; moved to {aside}") from None


def _plain(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
