SIGTERM and SIGINT shut down gracefully: transactions under way finish (up to the new shutdown_timeout), clients are ended with PostgreSQL's 57P01, and a second signal shuts down at once.
