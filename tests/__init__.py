"""
pgtwist's test suite.
"""
