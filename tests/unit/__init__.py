"""
Unit tests: no sockets, no real reactor, no sleeping.
"""
