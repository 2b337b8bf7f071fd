"""An alert consumer that shares the fleet's alert stream with others (MQTT 5 shared subscription).

Run several copies with the same --group and different --id: the broker hands each alert to one of
them. Each keeps a persistent session (fixed client id, session expiry), so alerts assigned to a
copy that is restarting wait for it on the broker instead of being lost. Prints one alert (JSON)
per line; replace `handle` with what your service does (ticket, page, historian).

    python alert_consumer.py --host broker.plant --group oncall --id oncall-1
    python alert_consumer.py --host broker.plant --group oncall --id oncall-2

Needs only paho-mqtt >= 2. Alerts are delivered at least once: drop duplicates by their `id`.
"""

import argparse
import json
import os

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def handle(alert: dict) -> None:
    print(json.dumps(alert, separators=(",", ":")), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="localhost")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--prefix", default="pdm", help="the agents' mqtt.topic_prefix")
    ap.add_argument("--group", required=True, help="share group: consumers in one group split the alerts")
    ap.add_argument("--id", required=True, help="this consumer's client id (keep it across restarts)")
    args = ap.parse_args()

    topic = f"$share/{args.group}/{args.prefix}/+/+/alert"
    seen: set[str] = set()  # ids handled by this consumer (a re-send after a reconnect comes again)

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(topic, qos=1)

    def on_message(client, userdata, msg):
        alert = json.loads(msg.payload)
        if alert.get("id") not in seen:
            seen.add(alert.get("id"))
            handle(alert)

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=args.id,
                         protocol=mqtt.MQTTv5)
    if os.environ.get("MQTT_USERNAME"):
        client.username_pw_set(os.environ["MQTT_USERNAME"], os.environ.get("MQTT_PASSWORD"))
    client.on_connect = on_connect
    client.on_message = on_message
    session = Properties(PacketTypes.CONNECT)
    session.SessionExpiryInterval = 3600  # the broker keeps this consumer's share for an hour
    client.connect(args.host, args.port, clean_start=False, properties=session)
    try:
        client.loop_forever()
    except KeyboardInterrupt:
        client.disconnect()


if __name__ == "__main__":
    main()
