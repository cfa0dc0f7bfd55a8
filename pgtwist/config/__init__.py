"""
Configuration: pgagroal's file family read into one immutable L{Configuration}.
"""

__all__ = ["loader", "model", "restart", "validate", "values"]
