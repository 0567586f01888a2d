"""Metrics and structured logs: what an operator watches."""
