-- Device MQTT passwords are kept as Mosquitto PBKDF2-SHA512 hashes, so the broker's password and
-- ACL files can be rendered from the registry (fast bulk onboarding; see registry/broker_auth.py).
-- depends: 0005_registry_notify

ALTER TABLE devices ADD COLUMN mqtt_password_hash text;
