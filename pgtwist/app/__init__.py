"""
Process assembly: the bootstrap (plugins discovered once, the one load +
validate, logging and signals), the service tree, the twistd plugin's
options, the C{pgtwist} console script, worker processes and log observers.
"""
