"""How the private test database servers of `testbed.databases` are run: the host they share
(directory, ports, service users, locks, remembered URLs) and each server's own mechanics."""
