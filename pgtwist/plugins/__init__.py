"""
Plugin package: pgtwist's built-in pipelines and auth methods, and any
third-party dropins found in C{pgtwist/plugins/} directories on C{sys.path}.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # type: ignore[name-defined]
__all__: list[str] = []
