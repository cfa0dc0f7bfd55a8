"""
The network layer: the Twisted protocols around the sans-IO codec (client
side, PostgreSQL side, cancel requests), endpoints and socket paths,
listeners, backpressure, eager writes and pgtwist's reactors.
"""
