"""What the CLI shows, as plain data: table columns, rows and ``key: value`` pairs built from
the server's JSON, one module per thing shown. :class:`chidori.cli.output.Output` turns them
into rich tables at a terminal or aligned text otherwise.

- ``cells``: one cell's text: absent values, times, durations, counts, aligned columns.
- ``jobs``: the jobs table, one job's detail and its events, state colours.
- ``admission``: queues, capacity and admission limits.
- ``identity``: users, ``whoami`` and API tokens.
- ``admin``: the audit log and the submission policy.
- ``warm_pools``: warm-driver pools and their drivers.
"""
