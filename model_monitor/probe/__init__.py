"""Probing: everything that turns a Case into an Outcome.

engine (caps, retries, deadlines) -> transport (the client) -> exchange (one timed request) -> stream (an event
stream read as it arrives) -> judge (the type's check, contracts, usage) -> Outcome. loop is the background event
loop the engine runs on; retry holds the backoff every sender shares.
"""
