SIGTERM and SIGINT shut down gracefully: transactions under way finish (up to the new shutdown_timeout), clients are ended with PostgreSQL's 57P01, and a second signal shuts down at once.
The console has PgBouncer's SUSPEND and WAIT_CLOSE, and SHOW STATE reports a suspension; every control command, KILL_CLIENT included, is tested to refuse stats users.
