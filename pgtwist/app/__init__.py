"""
Process assembly: the service tree, the twistd plugin's options, the
C{pgtwist} console script, worker processes and logging set-up.
"""
