"""What an operator following docs/federated.md and docs/privacy.md from a wheel install ran into:
a share file saved from a topic with nothing retained (empty) must be named as such, and
`config check` must say when `storage.encrypt`'s key would stop the agent from starting, instead of OK; the
status names the sensors from the start; `pdm-agent status` says what the fleet did with a sensor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agent.sealed import Sealer, write

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("CREDENTIALS_DIRECTORY", None)
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_an_empty_share_file_is_named_empty_not_a_json_error(tmp_path):
    # `mosquitto_sub -t TOPIC -C 1 -W 5 > gw-b.json` with nothing retained on TOPIC leaves an empty file
    (tmp_path / "gw-b.json").write_text("")
    (tmp_path / "gw-a.json").write_text("")
    for args in (("fleet", "merge", "gw-a.json", "gw-b.json", "--out", "prior"),
                 ("fleet", "bounds", "gw-b.json")):
        run = cli(*args, cwd=tmp_path)
        assert run.returncode == 2, run.stderr
        assert "empty: no share in it" in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert "not JSON" not in run.stderr
    assert not (tmp_path / "prior").exists()


def _config(tmp_path: Path, key_file: str | None) -> Path:
    state = tmp_path / "state"
    text = ("device: {id: gw1}\n"
            "storage:\n"
            f"  dir: {state}\n"
            "  encrypt: true\n"
            f"  key_file: {key_file if key_file is not None else 'null'}\n"
            "sensors:\n  - {name: pump1, protocol: sim}\n")
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def test_config_check_warns_when_the_encryption_key_would_stop_the_agent(tmp_path):
    good = tmp_path / "model.key"
    good.write_bytes(os.urandom(32))
    # a baseline sealed with `good`, as the agent leaves it in storage.dir
    sealer = Sealer(good.read_bytes(), "test")
    write(str(tmp_path / "state" / "models" / "pump1.json"), b"{}", "baseline", "pump1", sealer)

    run = cli("config", "check", "--config", str(_config(tmp_path, str(good))))
    assert run.returncode == 0 and "key_file" not in run.stderr, run.stderr

    missing = tmp_path / "nonexistent.key"
    run = cli("config", "check", "--config", str(_config(tmp_path, str(missing))))
    assert run.returncode == 0, run.stderr
    assert ("storage.key_file: the agent will not start" in run.stderr and "No such file or directory" in run.stderr
            and "agent.yaml:5" in run.stderr), run.stderr

    short = tmp_path / "short.key"
    short.write_bytes(os.urandom(16))
    run = cli("config", "check", "--config", str(_config(tmp_path, str(short))))
    assert "the agent will not start" in run.stderr and "holds 16 bytes" in run.stderr, run.stderr

    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    run = cli("config", "check", "--config", str(_config(tmp_path, str(other))))
    assert "the agent will not start" in run.stderr and "wrong key" in run.stderr, run.stderr
    # the agent itself refuses the same key, as config check said
    run_agent = cli("run", "--config", str(_config(tmp_path, str(other))))
    assert run_agent.returncode == 2 and "wrong key" in run_agent.stderr, run_agent.stderr

    # encrypt: false with that sealed baseline in storage.dir: not read, the sensor learns anew; said before
    off = _config(tmp_path, None)
    off.write_text(off.read_text().replace("encrypt: true", "encrypt: false"))
    run = cli("config", "check", "--config", str(off))
    assert run.returncode == 0, run.stderr
    assert "storage.encrypt: false, but 1 encrypted file(s) are stored" in run.stderr, run.stderr
    assert "pump1.json.sealed" in run.stderr and "agent.yaml:4" in run.stderr


def test_config_check_leaves_the_systemd_credential_to_the_service(tmp_path):
    # key_file null: the key is the systemd credential, present only inside the service; not judged here
    run = cli("config", "check", "--config", str(_config(tmp_path, None)))
    assert run.returncode == 0 and "key_file" not in run.stderr and "will not start" not in run.stderr, run.stderr


def test_the_status_names_the_sensors_from_the_start_not_a_status_interval_later(tmp_path, broker):
    # docs/federated.md: a sensor started from a prior is `ready` from its first window and its status says so;
    # `pdm-agent status` right after the start showed the device online with no sensor for status_interval_s
    # (the first connect's status came before the sensors were built; eight sensors take long enough to build)
    import json

    from agentproc import sim_sensor, start_agent, stop, write_config
    from broker import Subscriber

    config = write_config(tmp_path / "agent.yaml", broker=broker, storage=tmp_path / "state",
                          sensors=[sim_sensor(f"pump{i}", learn_seconds=600) for i in range(1, 9)])
    text = config.read_text().replace("status_interval_s: 5.0", "status_interval_s: 3600")
    assert text != config.read_text()
    config.write_text(text)
    sub = Subscriber(broker.host, broker.port, ["pdm/e2e-gw/status"])
    agent = start_agent(config, tmp_path / "agent.log")
    try:
        def named(msgs):
            docs = [json.loads(m.payload) for m in msgs if m.payload]
            return any(len(d.get("sensors", {})) == 8 for d in docs)
        sub.wait_for(named, timeout=20)  # learning (600 s) and status_interval_s (1 h) say nothing before
    finally:
        sub.close()
        assert stop(agent) == 0


def test_status_text_says_what_the_fleet_did_with_the_sensor():
    # `pdm-agent status` printed "baseline learning 18%" for a sensor whose prior was refused, with no word of it;
    # shapes as the agent published them in the walk (docs/mqtt.md, sensors.<name>.fleet)
    from agent.status_cmd import render

    def doc(**sensor):
        return {"state": "online", "version": "0.1.0", "ts": "T", "sensors": {"pump1": {
            "online": True, "windows": 3, "health": {"state": "ok"}, "condition": "clear", **sensor}}}

    learning = {"state": "learning", "progress": 0.18, "windows": 0, "learned_at": None}
    text = render(doc(baseline=learning, fleet={"prior_refused": {
        "path": "/etc/pdm-agent/pump-a-prior", "ts": 1796076048.0,
        "reason": "signature does not verify: signed by key 2dc0c0bfd20fbf6f, which is not trusted"}}), "x", "gw")
    assert ("fleet prior refused (/etc/pdm-agent/pump-a-prior): signature does not verify: signed by key "
            "2dc0c0bfd20fbf6f, which is not trusted; the sensor learns its own baseline instead") in text
    shared = {"topic": "pdm/fleet/pump-a/baseline/gw-a/pump1", "windows": 118, "learned_at": "2026-11-30T21:53:57Z",
              "bytes": 20020, "privacy": {"mechanism": "gaussian", "epsilon": 10.0, "delta": 1e-06,
                                          "covariance": "full"}}
    text = render(doc(baseline={"state": "ready"}, fleet={"shared": shared}), "x", "gw")
    assert ("fleet: shared on pdm/fleet/pump-a/baseline/gw-a/pump1 (118 windows learned 2026-11-30T21:53:57Z; "
            "private: epsilon 10.0, full covariance)") in text
    text = render(doc(baseline={"state": "ready"}, fleet={"shared": {**shared, "privacy": None}}), "x", "gw")
    assert "; exact)" in text
    text = render(doc(baseline={"state": "ready"}, fleet={"not_shared": {"reason": "baseline learned without "
                                                                          "fleet.privacy"}}), "x", "gw")
    assert "fleet: not shared: baseline learned without fleet.privacy" in text
    prior = {"path": "/p", "machine_type": "pump-a", "key_id": "k", "created": "C", "machines": 3, "windows": 354}
    text = render(doc(baseline={"state": "ready"}, fleet={"prior": prior, "prior_fit": {
        "windows": 30, "below_warning": 4, "note": "a fault, or a machine unlike the donors"}}), "x", "gw")
    assert "fleet: started from the prior /p (pump-a, 354 windows of 3 machine(s))" in text
    assert "fleet prior does not fit: a fault, or a machine unlike the donors" in text
    text = render(doc(baseline={**learning, "refused": {"reason": "authentication failed", "ts": 1.0}}), "x", "gw")
    assert "baseline refused: authentication failed; learning anew" in text
    assert "fleet" not in render(doc(baseline={"state": "ready"}), "x", "gw")
