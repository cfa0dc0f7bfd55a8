"""
pgtwist: a PostgreSQL connection pooler on Twisted.
"""

__version__ = "0.1.0"
