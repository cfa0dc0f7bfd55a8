"""
Pooling: the state of every backend, the pool set that lends them (the one
place that changes that state), maintenance between requests, servers and
failover, the janitor, and the counters the admin surfaces read.
"""
