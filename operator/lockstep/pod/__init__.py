"""What runs inside a migration pod: the runner, the lock holder, plans and rehearsals."""
