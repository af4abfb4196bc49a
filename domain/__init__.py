"""The pure core of ClientFlow Worker: values, job payloads, ports and the four capabilities.

Imports only the standard library, attrs and itself (checked by tests/test_layering.py and import-linter).
"""
