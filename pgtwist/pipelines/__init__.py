"""
Pooling modes (L{pgtwist.interfaces.IPipeline} plugins): session, and later
transaction and performance.
"""

__all__ = ["session"]
