"""The domain: Chidori's rules as plain, pure code, with no I/O and no framework.

The job spec and its units, job and attempt states and their transitions, the records the store
hands out, roles and what each may do, admission (gang demand, limits, quotas, priorities, fair
share), warm-start rules and warm-pool planning, the submission policy, secret redaction, and the
domain errors every boundary translates its own failures into. Everything else imports from here;
nothing here imports from the rest of Chidori.
"""
