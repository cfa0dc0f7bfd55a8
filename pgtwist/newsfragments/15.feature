The transaction pipeline's lend, relay and take-back make half the Python calls per transaction they made (41 to 21 simple, 76 to 31 extended), and ``python -m benchmarks.calls`` counts them.
