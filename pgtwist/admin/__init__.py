"""
Administration:
the vault tool, and later the console, cli, metrics and manhole.
"""

__all__: list[str] = []
