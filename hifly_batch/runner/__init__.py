"""The run: scheduler, jobs, worker pool, polling, state store and outputs."""
