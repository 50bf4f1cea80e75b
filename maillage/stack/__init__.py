"""The embedded stack: Mosquitto, the Tansu Kafka-API broker, PostgreSQL and maillage's own processes."""
