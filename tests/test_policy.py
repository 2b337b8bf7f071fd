"""The alert policy: debounce, hysteresis, levels and clear events."""

from agent.policy import AlertPolicy, PolicyConfig
from agent.records import Score


def run(values, ready=True, **cfg):
    policy = AlertPolicy(PolicyConfig(**cfg), device="gw", sensor="pump1")
    events = []
    for t, v in enumerate(values):
        alert = policy.update(Score("pump1", float(t), v, ready, "det@1", (("ax.kurtosis", 9.0, 0.7),)))
        if alert:
            events.append((int(alert.ts), alert.level))
    return events, policy


def test_single_spike_is_debounced():
    events, policy = run([0.1, 0.99, 0.1, 0.1, 0.1, 0.99, 0.1, 0.1])
    assert events == []
    assert policy.level == "clear"


def test_persistent_warning_raised_once_and_cleared():
    events, _ = run([0.1, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.1, 0.1, 0.1, 0.1])
    assert events == [(3, "warning"), (9, "clear")]


def test_alarm_escalates_then_steps_down_through_warning():
    values = [0.6] * 3 + [0.95] * 4 + [0.6] * 4 + [0.1] * 4
    events, _ = run(values)
    assert [level for _, level in events] == ["warning", "alarm", "warning", "clear"]


def test_hysteresis_prevents_chatter_around_threshold():
    # Hovering between 0.45 and 0.55 around the 0.5 threshold: raised once, never cleared,
    # because clearing needs scores below 0.5 - 0.1.
    values = [0.1] + [0.55, 0.55, 0.55, 0.45, 0.45, 0.45] * 6
    events, policy = run(values)
    assert [level for _, level in events] == ["warning"]
    assert policy.active
    # Without hysteresis the same signal clears and re-raises.
    events, _ = run(values, hysteresis=0.0)
    assert len(events) > 2


def test_learning_scores_never_alert():
    events, _ = run([0.99] * 20, ready=False)
    assert events == []


def test_alert_payload_fields_and_stable_id():
    policy = AlertPolicy(PolicyConfig(debounce_n=1, debounce_m=1), device="gw", sensor="pump1")
    alert = policy.update(Score("pump1", 100.0, 0.97, True, "det@1", (("ax.kurtosis", 9.0, 0.7),)))
    payload = alert.payload()
    assert set(payload) >= {"id", "ts", "device", "sensor", "level", "score", "threshold", "model", "reason"}
    assert payload["level"] == "alarm" and payload["threshold"] == 0.9
    assert payload["reason"][0]["feature"] == "ax.kurtosis"
    again = AlertPolicy(PolicyConfig(debounce_n=1, debounce_m=1), device="gw", sensor="pump1")
    assert again.update(Score("pump1", 100.0, 0.97, True, "det@1", (("ax.kurtosis", 9.0, 0.7),))).id == alert.id
    # After the wall clock steps back, another event at the same ts must not reuse the id.
    other = AlertPolicy(PolicyConfig(debounce_n=1, debounce_m=1), device="gw", sensor="pump1")
    assert other.update(Score("pump1", 100.0, 0.95, True, "det@1", (("ax.rms_g", 2.0, 0.6),))).id != alert.id


def test_aggregate_ids_differ_for_different_content_at_the_same_ts():
    from agent.records import Aggregate

    a = Aggregate(60.0, "gw", "pump1", 60.0, 14, {"ax.rms_g": {"mean": 1.0, "min": 0.9, "max": 1.2}})
    same = Aggregate(60.0, "gw", "pump1", 60.0, 14, {"ax.rms_g": {"mean": 1.0, "min": 0.9, "max": 1.2}})
    other = Aggregate(60.0, "gw", "pump1", 60.0, 3, {"ax.rms_g": {"mean": 0.5, "min": 0.4, "max": 0.6}})
    assert a.id == same.id and a.id != other.id
