"""Anomaly detection: per-device rules, silent devices, an online statistical detector.

`model` holds the shapes every part shares (findings, anomalies, device context); `meters`,
`lighting`, `care` and `quality` hold the rules; `online` the statistical detector; `engine`
turns one device's records into anomaly transitions; `processor` is the sink the runner drives.
"""
