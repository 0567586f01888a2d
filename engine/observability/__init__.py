"""Metrics and structured logs (issue 11): what an operator watches."""
