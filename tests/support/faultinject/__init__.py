"""Fault injection for the migration pod's two processes (issue 16).

A migration Job runs `lockstep lock` (the lock sidecar) and the migrate process (`lockstep run
--no-lock` or a tool's CLI). A pod death kills both; the next pod starts at once. These modules
reproduce that without Kubernetes, and watch the database server from outside:

- :mod:`.ports` finds the TCP client ports a process tree holds (/proc), which is how a server
  session is tied to the run that opened it, on today's code and on a fenced one alike;
- :mod:`.monitor` polls the server's sessions (pg_stat_activity, PROCESSLIST) at >= 10 Hz and
  records every moment where two runs execute migration statements on one database;
- :mod:`.workloads` writes migrations that sleep (SQL, Alembic, Knex) and checks what a run
  reported against what the database holds;
- :mod:`.trials` starts the runs, kills them at random points, reruns at once and tallies.
"""
