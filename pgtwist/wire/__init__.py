"""
The PostgreSQL v3 wire protocol, sans-IO: framing, messages and their codec.

Nothing in this package imports Twisted (C{tests/unit/test_wire_purity.py}).
"""

__all__ = [
    "codec",
    "constants",
    "errors",
    "framing",
    "messages",
    "scan",
    "sql",
    "startupsettings",
    "walker",
]
