"""Logs, errors, traces and metrics leave the process through this package, redacted by one set of rules."""
