"""Reporting: where each case's verdict goes once it is known (heartbeats, metrics, documents, the terminal)."""
