"""The publisher against a real Mosquitto that demands TLS and a username/password."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config_models import MqttConfig
from agent.outbox import Outbox
from agent.publisher import Publisher
from broker import Broker


def _cert(subject, issuer_key, key, issuer=None, ca=False, san=None):
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path, obj):
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


def secure_broker(tmp_path):
    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("pdm test CA", ca_key, ca_key, ca=True)
    srv = _cert("localhost", ca_key, srv_key, issuer=ca.subject, san="localhost")
    ca_file, cert, key = _pem(tmp_path / "ca.pem", ca), _pem(tmp_path / "srv.pem", srv), _pem(tmp_path / "srv.key", srv_key)
    passwd = tmp_path / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-c", "-b", str(passwd), "gateway", "s3cret"], check=True)
    passwd.chmod(0o600)
    broker = Broker(tmp_path, listener=[
        "allow_anonymous false", f"password_file {passwd}",
        f"cafile {ca_file}", f"certfile {cert}", f"keyfile {key}",
    ])
    broker.host = "localhost"
    broker.start()
    return broker, ca_file


def publisher(broker, outbox, ca_file, password):
    password_file = ca_file.parent / f"password-{password}"
    password_file.write_text(password + "\n")
    mqtt = MqttConfig(host=broker.host, port=broker.port, client_id="sec-test", topic_prefix="pdm",
                      username="gateway", password_file=password_file, tls={"ca_file": ca_file},
                      reconnect_min_s=0.2, reconnect_max_s=0.5)
    return Publisher(mqtt, outbox, dict, device_id="gw", version="t", log=structlog.get_logger())


def test_tls_and_password_delivers_and_wrong_password_does_not(tmp_path):
    broker, ca_file = secure_broker(tmp_path)
    outbox = Outbox(str(tmp_path / "outbox.sqlite"), 1 << 20)
    try:
        outbox.put("pdm/gw/pump1/alert", b'{"id":"a1"}', "alert", "pump1")
        bad = publisher(broker, outbox, ca_file, "wrong")
        bad.start()
        time.sleep(2)
        assert not bad.connected and outbox.depth()["alerts"] == 1  # refused, nothing lost
        bad.stop()
        good = publisher(broker, outbox, ca_file, "s3cret")
        good.start()
        deadline = time.monotonic() + 10
        while outbox.depth()["alerts"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert good.connected
        assert outbox.depth()["alerts"] == 0, "the alert was acknowledged over TLS"
        good.stop()
    finally:
        outbox.close()
        broker.stop()
