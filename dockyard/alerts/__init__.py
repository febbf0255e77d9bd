"""Alerts: rules evaluated against metrics and app status, their state, and notifications."""
