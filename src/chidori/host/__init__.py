"""The host: what one replica runs on its own machine.

The scheduler loop and its steps (leases, recovery, cancels, admission, warm reconciliation,
launching), the driver host that runs drivers as sandboxed child processes, the warm pool, the
watchdog process, isolation (uids, sandboxes, job folders read without following links),
process sweeps, and retention. It reads and writes the store; it never serves HTTP.
"""
