"""agent/sealed.py and agent/bundle_store.py: keys, the file format's guarantees, and the moves
between plain and encrypted storage (the real agent process is in tests/e2e/test_encrypted_state_e2e.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent import bundle_store, sealed
from agent.config_models import StorageConfig


class _Log:
    def __init__(self):
        self.lines = []

    def _add(self, event, **kw):
        self.lines.append((event, kw))

    info = warning = error = _add


def _sealer(seed: int = 0) -> sealed.Sealer:
    return sealed.Sealer(bytes([seed]) * 32, f"key{seed}")


def test_keys_come_from_key_file_or_credential_and_are_checked(tmp_path):
    key = tmp_path / "k"
    key.write_bytes(os.urandom(32))
    assert sealed.from_config(StorageConfig(dir=tmp_path)) is None  # encrypt off: no key needed
    by_file = sealed.from_config(StorageConfig(dir=tmp_path, encrypt=True, key_file=key), environ={})
    (tmp_path / "creds").mkdir()
    shutil.copy(key, tmp_path / "creds" / "model-key")
    by_cred = sealed.from_config(StorageConfig(dir=tmp_path, encrypt=True),
                                 environ={"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert by_file.key_id == by_cred.key_id and "model-key" in by_cred.source
    with pytest.raises(sealed.KeyProblem, match="no key: set storage.key_file"):
        sealed.from_config(StorageConfig(dir=tmp_path, encrypt=True), environ={})
    with pytest.raises(sealed.KeyProblem, match="No such file"):
        sealed.from_config(StorageConfig(dir=tmp_path, encrypt=True, key_file=tmp_path / "none"), environ={})


def test_keys_per_purpose_are_separate_and_the_key_id_reveals_no_key():
    s = _sealer()
    assert s._keys["baseline"] != s._keys["bundle"] and s.key_id not in (s._keys["baseline"][:8], bytes(8))
    blob = s.seal("baseline", "pump1", b"x" * 100)
    with pytest.raises(sealed.Refused):
        s.open("bundle", "pump1", blob)  # same sensor, other purpose
    assert s.seal("baseline", "pump1", b"same") != s.seal("baseline", "pump1", b"same")  # fresh nonce


def test_wrong_key_found_at_start_without_touching_anything(tmp_path):
    path = sealed.write(str(tmp_path / "models" / "pump1.json"), b"{}", "baseline", "pump1", _sealer(1))
    before = Path(path).read_bytes(), os.stat(path).st_mtime_ns
    sealed.check_key(str(tmp_path), _sealer(1))
    with pytest.raises(sealed.KeyProblem, match="wrong key: .*pump1.json.sealed"):
        sealed.check_key(str(tmp_path), _sealer(2))
    assert (Path(path).read_bytes(), os.stat(path).st_mtime_ns) == before


def test_plain_baseline_is_sealed_at_next_save_and_sealed_one_is_not_read_without_encryption(tmp_path):
    plain = str(tmp_path / "models" / "pump1.json")
    sealed.write(plain, b'{"a": 1}', "baseline", "pump1", None)
    log = _Log()
    assert sealed.read(plain, "baseline", "pump1", _sealer(), log) == b'{"a": 1}'  # migration: read plain
    sealed.write(plain, b'{"a": 2}', "baseline", "pump1", _sealer())
    assert not os.path.exists(plain), "the plaintext outlived its encrypted copy"
    assert sealed.read(plain, "baseline", "pump1", _sealer(), log) == b'{"a": 2}'
    assert sealed.read(plain, "baseline", "pump1", None, log) is None
    assert any("storage.encrypt is off" in e for e, _ in log.lines)
    assert os.path.exists(plain + ".sealed"), "encryption off must not delete the sealed baseline"


def test_truncated_file_is_refused_and_moved_aside(tmp_path):
    plain = str(tmp_path / "models" / "pump1.json")
    path = sealed.write(plain, b"state" * 50, "baseline", "pump1", _sealer())
    Path(path).write_bytes(Path(path).read_bytes()[:-10])
    log = _Log()
    with pytest.raises(sealed.Refused, match="authentication failed.*moved to"):
        sealed.read(plain, "baseline", "pump1", _sealer(), log)
    [aside] = [p for p in os.listdir(tmp_path / "models") if ".refused-" in p]
    assert not os.path.exists(path) and log.lines[0][1]["moved_to"].endswith(aside)


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory):
    from models import bundle
    from models.training.data import Dataset
    from models.training.train import train, write_bundle

    tmp = tmp_path_factory.mktemp("sb")
    names = [f"ax.f{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 5.0
    path = write_bundle(train(Dataset(x, names, None, "t"), "pca", variants=("fp32",), version="v1", repeat=5),
                        str(tmp / "b"))
    key, pub = bundle.keygen(str(tmp / "k"))
    bundle.sign(path, key)
    return path, pub, names


def test_installed_bundle_opens_only_for_its_sensor_and_only_untouched(signed_bundle, tmp_path, monkeypatch):
    from agent import hotswap
    from agent.config_models import parse_sensor
    from models.bundle import BundleError

    path, pub, names = signed_bundle
    monkeypatch.setattr("models.features.feature_names", lambda spec: names)  # the test bundle's features
    s = _sealer()
    stored = bundle_store.install(path, parse_sensor(name="s1", protocol="sim"), str(tmp_path), [pub], s)
    assert stored.endswith(".sealed") and hotswap.candidate(str(tmp_path / "bundles" / "s1")) == stored
    assert bundle_store.open_bundle(stored, "s1", s, [pub]).version == "v1"
    with pytest.raises(BundleError, match="encrypted bundle refused: authentication failed"):
        bundle_store.open_bundle(stored, "s2", s, [pub])  # copied to another sensor's store
    with pytest.raises(BundleError, match="needs storage.encrypt"):
        bundle_store.open_bundle(stored, "s1", None, [pub])
    blob = bytearray(Path(stored).read_bytes())
    blob[-40] ^= 0x80
    Path(stored).write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="authentication failed"):
        bundle_store.open_bundle(stored, "s1", s, [pub])
