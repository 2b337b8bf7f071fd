"""Configuration: the shipped file loads, and every mistake an operator makes is reported with
its key path and line, all at once, as a ConfigError (never a traceback).

The error cases are data-driven (Telegraf's testcases layout): tests/cases/config/<case>/ holds a
`config.yaml` and the exact `expected.err`, loaded as `config.yaml` from that directory so the
messages carry the file name as the operator typed it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import config as config_mod
from agent.config import ConfigError, default_config_path, json_schema, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
CASES = sorted(p for p in (Path(__file__).parent / "cases" / "config").iterdir() if p.is_dir())
MINIMAL = "device: {id: gw1}\nsensors: [{name: pump1, protocol: sim}]\n"


def errors_of(text: str, source: str = "c.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source)
    return info.value.errors


def test_shipped_config_loads():
    cfg = load_config(ROOT / "config.yaml")
    pump = cfg.sensors[0]
    assert (pump.name, pump.protocol, pump.sample_rate) == ("pump1", "sim", 3200)
    assert pump.channels == ["ax", "ay", "az", "temp"] and pump.temperature_channels == ["temp"]
    assert (pump.simulator.fault, pump.simulator.fault_at) == ("outer-race", 90.0)
    assert pump.detector.learn_seconds == 60
    assert (cfg.mqtt.host, cfg.mqtt.port) == ("localhost", 1883)
    assert cfg.storage.dir == Path("state")
    assert cfg.aggregates.interval == 10


def test_shipped_config_documents_every_key():
    """The file is the documentation: every key of every section appears in it, set or commented."""
    text = (ROOT / "config.yaml").read_text()
    models = [config_mod.Config, config_mod.MqttConfig, config_mod.TlsConfig, config_mod.StorageConfig,
              config_mod.SensorConfig, *config_mod.SENSOR_MODELS.values(), config_mod.WindowConfig,
              config_mod.SimulatorConfig, config_mod.RegisterConfig,
              config_mod.DetectorConfig, config_mod.AlertsConfig, config_mod.AggregatesConfig,
              config_mod.LoggingConfig, config_mod.ModelsConfig, config_mod.DeviceConfig]
    missing = [f"{m.__name__}.{k}" for m in models for k in m.model_fields if f"{k}:" not in text]
    assert missing == []


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_error_case(case, monkeypatch):
    monkeypatch.chdir(case)
    expected = (case / "expected.err").read_text().splitlines()
    with pytest.raises(ConfigError) as info:
        load_config("config.yaml")
    assert info.value.errors == expected
    assert str(info.value) == "\n".join(expected)


def test_typo_key_suggests_the_right_one_with_its_line():
    text = MINIMAL + "mqtt:\n  host: broker\n  prot: 1883\n"
    assert errors_of(text) == ["mqtt.prot: unknown key 'prot'; did you mean 'port'? (c.yaml:5)"]


def test_wrong_type_names_the_path_and_line():
    text = (
        "device:\n  id: gw1\nsensors:\n  - name: a\n    protocol: sim\n"
        "  - name: b\n    protocol: sim\n    baudrate: 9600x\n"
    )
    (err,) = errors_of(text, "/etc/pdm-agent/config.yaml")
    assert err.startswith("sensors[1].baudrate: Input should be a valid integer")
    assert err.endswith("(/etc/pdm-agent/config.yaml:8)")


def test_all_errors_are_reported_at_once():
    text = "device: {id: 'a b'}\nmqtt: {port: 0}\nsensors:\n  - {name: p, protocol: sim, window: {size: 8}}\n"
    errs = errors_of(text)
    assert [e.split(":")[0] for e in errs] == ["device.id", "mqtt.port", "sensors[0].window.size"]


def test_inline_password_is_refused_with_the_alternative():
    (err,) = errors_of(MINIMAL + "mqtt: {password: secret}\n")
    assert err.startswith("mqtt.password: ") and "password_file" in err and "CREDENTIALS_DIRECTORY" in err
    assert "secret" not in err  # a secret must not end up in logs


def test_duplicate_sensor_names_refused():
    (err,) = errors_of("device: {id: g}\nsensors:\n- {name: a, protocol: sim}\n- {name: a, protocol: sim}\n")
    assert err == "sensors[1].name: duplicate sensor name 'a' (also sensors[0]) (c.yaml:4)"


def test_hop_larger_than_size_refused():
    (err,) = errors_of(MINIMAL.replace("sim}", "sim, window: {size: 64, hop: 65}}"))
    assert err.startswith("sensors[0].window.hop: must be <= size (64)")


def test_warning_not_below_alarm_refused():
    (err,) = errors_of(MINIMAL.replace("sim}", "sim, alerts: {warning: 0.95}}"))
    assert err.startswith("sensors[0].alerts.warning: must be < alarm (0.9)")


def test_yaml_syntax_error_has_file_and_line():
    (err,) = errors_of("device:\n  id: gw1\nsensors: [\n  {name: a\n", "my.yaml")
    assert err == "my.yaml:5:1: the '{' opened at line 4 is not closed with '}', or its items are not separated by ','"


@pytest.mark.parametrize("text, expected", [
    ("device:\n  id: gw1\nmqtt:\n  host: broker: 1\n",
     "c.yaml:4:15: unexpected ':' here: a value that contains ': ' must be quoted"),
    ("device:\n\tid: gw1\n", "c.yaml:2:1: a tab character: YAML indents with spaces only"),
    ("device:\n  id: gw1\n mqtt: {}\n", "c.yaml:3:2: this line is not aligned with the keys or list items "
                                          "of the block that starts at line 1"),
    ("device:\n  id: 'gw1\nsensors: []\n", "c.yaml:4:1: the quote opened at line 2 is never closed"),
    ("device: *base\n", "c.yaml:1:9: '*base' refers to an anchor '&base' that is not defined above it"),
])
def test_yaml_syntax_errors_in_plain_words(text, expected):
    (err,) = errors_of(text, "c.yaml")
    assert err.startswith(expected) and "mapping values" not in err and "<block" not in err


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="ab: -[]{},#&*!|>'\"\n\t0123456789", max_size=60))
def test_any_text_gives_a_config_or_a_config_error(text):
    try:
        parse_config(text)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) for e in exc.errors)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_damaged_shipped_config_gives_a_config_error_not_a_traceback(data):
    lines = (ROOT / "config.yaml").read_text().splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    lines[i] = data.draw(st.sampled_from(["", "  x: 1", lines[i] + " ]", lines[i].replace(":", "")]))
    try:
        parse_config("\n".join(lines))
    except ConfigError:
        pass


def test_state_directory_from_systemd_when_dir_unset(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/pdm-agent-test:/var/lib/other")
    assert parse_config(MINIMAL).storage.dir == Path("/var/lib/pdm-agent-test")
    assert parse_config(MINIMAL + "storage: {dir: /srv/x}\n").storage.dir == Path("/srv/x")
    monkeypatch.delenv("STATE_DIRECTORY")
    assert parse_config(MINIMAL).storage.dir == Path("/var/lib/pdm-agent")


def test_defaults_derived_from_other_keys():
    custom = "sim, channels: [x, temp_bearing, temp2], window: {size: 256}}"
    cfg = parse_config(MINIMAL.replace("sim}", custom))
    sensor = cfg.sensors[0]
    assert sensor.temperature_channels == ["temp_bearing", "temp2"]
    assert sensor.window.hop == 256
    assert sensor.bands == [(10, 100), (100, 500)]  # default bands clipped to Nyquist at 1000 Hz
    assert cfg.mqtt.effective_client_id == "pdm-agent-gw1"
    assert parse_config(MINIMAL + "mqtt: {client_id: me}").mqtt.effective_client_id == "me"


def test_password_from_file_or_systemd_credential(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("s3cret\n")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert parse_config(MINIMAL).mqtt.password() is None
    assert parse_config(MINIMAL + f"mqtt: {{password_file: {tmp_path / 'pw'}}}").mqtt.password() == "s3cret"
    (tmp_path / "mqtt-password").write_text("fromcred")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert parse_config(MINIMAL).mqtt.password() == "fromcred"
    via_env = parse_config(MINIMAL + "mqtt: {password_file: '${CREDENTIALS_DIRECTORY}/pw'}")
    assert via_env.mqtt.password() == "s3cret"


def test_config_is_immutable():
    cfg = parse_config(MINIMAL)
    with pytest.raises(Exception):
        cfg.mqtt.port = 1


def test_json_schema_is_valid_json_with_sensors():
    schema = json.loads(json.dumps(json_schema()))
    assert "sensors" in schema["properties"] and schema["$schema"].startswith("https://json-schema.org/")
    assert schema["required"] == ["device", "sensors"]


@pytest.mark.parametrize("sensor, valid", [
    ("{name: a, port: /dev/x}", True),  # the default protocol, lines
    ("{name: a, port: /dev/x, protocol: lines}", True),
    ("{name: a, port: /dev/x, protocol: frames}", True),
    ("{name: a, protocol: sim, simulator: {rpm: 900}}", True),
    ("{name: a, port: /dev/x, protocol: modbus, preset: qm30vt2, slave_id: 2}", True),
    ("{name: a, port: /dev/x, slave_id: 2}", False),  # a modbus key on a lines sensor
    ("{name: a, port: /dev/x, protocol: frames, simulator: {rpm: 1}}", False),
    ("{name: a, port: /dev/x, protocol: opcua}", False),
])
def test_json_schema_accepts_what_the_agent_accepts(sensor, valid):
    """`config schema` is for editors' YAML language servers: a sensor the agent accepts must match
    exactly one `sensors[]` alternative, one it refuses none."""
    import jsonschema
    import yaml

    text = f"device: {{id: g}}\nsensors: [{sensor}]\n"
    errors = list(jsonschema.Draft202012Validator(json_schema()).iter_errors(yaml.safe_load(text)))
    assert (errors == []) == valid, [e.message for e in errors]
    if valid:
        parse_config(text)
    else:
        with pytest.raises(ConfigError):
            parse_config(text)
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert list(jsonschema.Draft202012Validator(json_schema()).iter_errors(shipped)) == []


def test_default_config_path(tmp_path, monkeypatch):
    monkeypatch.setattr(config_mod, "SYSTEM_CONFIG_PATH", str(tmp_path / "etc.yaml"))
    monkeypatch.setenv("PDM_AGENT_CONFIG", "/x/agent.yaml")
    assert default_config_path() == "/x/agent.yaml"
    monkeypatch.delenv("PDM_AGENT_CONFIG")
    assert default_config_path() == "./config.yaml"
    (tmp_path / "etc.yaml").write_text(MINIMAL)
    assert default_config_path() == str(tmp_path / "etc.yaml")


def test_config_check_warns_about_a_missing_serial_device_and_empty_aggregates(tmp_path, capsys):
    """Valid, so exit 0, but said in words: a USB adapter may be plugged in later."""
    from agent.cli import main

    config = tmp_path / "config.yaml"
    config.write_text("device: {id: gw1}\nsensors:\n  - name: pump1\n    port: /dev/ttyUSB-not-here\n"
                      "aggregates:\n  interval: 2\n")
    assert main(["config", "check", "--config", str(config)]) == 0
    out = capsys.readouterr()
    assert out.err.splitlines() == [
        f"warning: sensors[0].port: /dev/ttyUSB-not-here does not exist (yet): the agent starts anyway and opens "
        f"it when it appears (a USB adapter not plugged in? a typo?) ({config}:4)",
        f"warning: aggregates.interval: 2 s is shorter than sensor pump1's window hop (4096 samples at 1000 Hz "
        f"= 4.1 s): some aggregates will have count 0 ({config}:6)"]
    assert "OK" in out.out
    present = tmp_path / "ttyUSB0"
    present.touch()
    config.write_text(f"device: {{id: gw1}}\nsensors:\n  - name: pump1\n    port: {present}\n")
    assert main(["config", "check", "--config", str(config)]) == 0
    assert capsys.readouterr().err == ""


def test_a_key_of_another_protocol_is_an_error_at_the_key_the_operator_wrote():
    """`sensors[]` is discriminated on `protocol`: a lines sensor with Modbus keys is refused, and the
    path is the user's (`sensors[0].slave_id`), without the union's tag."""
    text = "device: {id: gw}\nsensors:\n  - name: p\n    port: /dev/ttyUSB0\n    slave_id: 3\n    simulator: {rpm: 10}\n"
    assert errors_of(text) == [
        "sensors[0].slave_id: not a key of protocol 'lines' (the default: `protocol` is not set); it is a key of protocol 'modbus' (c.yaml:5)",
        "sensors[0].simulator: not a key of protocol 'lines' (the default: `protocol` is not set); it is a key of protocol 'sim' (c.yaml:6)",
    ]
    explicit = text.replace("    slave_id", "    protocol: lines\n    slave_id")
    assert errors_of(explicit)[0] == "sensors[0].slave_id: not a key of protocol 'lines'; it is a key of protocol 'modbus' (c.yaml:6)"
    modbus = "device: {id: gw}\nsensors:\n  - {name: p, port: /dev/x, protocol: modbus, preset: qm30vt2, slave_id: 3, pol_interval: 2}\n"
    assert errors_of(modbus) == ["sensors[0].pol_interval: unknown key 'pol_interval'; did you mean 'poll_interval'? (c.yaml:3)"]
    sim = parse_config("device: {id: gw}\nsensors: [{name: p, protocol: sim, simulator: {rpm: 900}}]").sensors[0]
    assert sim.simulator.rpm == 900 and not hasattr(sim, "slave_id")
