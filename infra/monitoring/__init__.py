"""Monitoring from one catalogue: metric names (catalogue.py), the dashboard's panels
(panels.py) and the alerts (alerts.py), rendered for Grafana (grafana.py) and Cloud Monitoring
(cloud_monitoring.py) by `python -m infra.monitoring`. docs/OPERATIONS.md is the operator's guide.
"""
