"""
Pooling modes (L{pgtwist.interfaces.IPipeline} plugins): session,
transaction and performance.
"""

__all__ = ["performance", "session", "transaction"]
