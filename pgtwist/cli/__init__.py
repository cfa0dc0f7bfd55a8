"""
The command-line tools: C{pgtwist-cli} (pgagroal-cli's commands, over the
management port) and C{pgtwist-admin} (the users vault).
"""
