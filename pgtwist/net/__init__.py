"""
The network layer: the Twisted protocols around the sans-IO codec (client
side, PostgreSQL side, cancel requests), listeners, backpressure, eager
writes and pgtwist's reactors.
"""
