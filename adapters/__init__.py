"""Adapters: one module per technology, implementing the domain's ports and translating library errors."""
