"""Say why: a broker refusing the credentials is reported as `not authorized` with the user name,
and the password file is read again before every connection attempt and on SIGHUP, so a rotated
password is picked up without a restart. Real Mosquitto with a password file, real agent process.
"""

from __future__ import annotations

import shutil
import signal
import subprocess

from agentproc import log_events, sim_sensor, start_agent, stop, wait_until, write_config
from broker import Broker


def _events(log, prefix: str) -> list[dict]:
    return [e for e in log_events(log) if str(e.get("event", "")).startswith(prefix)]


def test_wrong_password_is_named_and_a_rotated_file_is_picked_up(tmp_path):
    passwd = tmp_path / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-c", "-b", str(passwd), "gateway", "s3cret"], check=True)
    passwd.chmod(0o644)
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", listener=["allow_anonymous false", f"password_file {passwd}"])
    broker.start()
    secret = tmp_path / "mqtt-password"
    secret.write_text("wrong\n")
    log = tmp_path / "agent.log"
    cfg = write_config(tmp_path / "c.yaml", broker=broker, storage=tmp_path / "state", interval=2,
                       sensors=[sim_sensor("pump1")])
    cfg.write_text(cfg.read_text().replace(
        "  keepalive: 5\n", f"  keepalive: 5\n  username: gateway\n  password_file: {secret}\n"))
    assert "password_file" in cfg.read_text()
    agent = start_agent(cfg, log)
    try:
        wait_until(lambda: _events(log, "broker unreachable"), 30, what="the refusal reported")
        (down,) = _events(log, "broker unreachable")  # said once, not every retry
        assert "not authorized" in down["reason"] and "'gateway'" in down["reason"]
        assert str(secret) in down["reason"]
        assert "Unspecified error" not in log.read_text()
        secret.write_text("s3cret\n")  # the operator fixes the file: no restart, no SIGHUP
        wait_until(lambda: _events(log, "broker connected"), 30, what="connected with the new password")
        secret.write_text("rotated\n")
        agent.send_signal(signal.SIGHUP)
        wait_until(lambda: _events(log, "broker password changed"), 20, what="the file re-read on SIGHUP")
        assert agent.poll() is None
    finally:
        code = stop(agent)
        broker.stop()
    assert code == 0
    assert "rotated" not in log.read_text() and "s3cret" not in log.read_text()  # never log a secret

