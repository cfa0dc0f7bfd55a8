"""
Integration tests: a real PostgreSQL cluster started by the suite, a real reactor.
"""
