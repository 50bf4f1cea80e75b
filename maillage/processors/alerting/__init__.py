"""The alerting stage: anomalies -> alerts (grouping, lifecycle), escalation, notifications."""
