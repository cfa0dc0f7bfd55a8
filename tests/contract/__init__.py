"""
Contract tests: mixins every implementation of an interface must pass.
"""
