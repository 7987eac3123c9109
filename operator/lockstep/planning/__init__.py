"""Pure planning: from the facts the controller gathered to one Decision.

`facts` (what planning reads and returns), `chain` (the decision, step by step), `history`
(recording finished runs), `runs` (the next run's request), `approval` (plans and approvals),
`drift` and `wording`. Nothing here talks to Kubernetes or a database.
"""
