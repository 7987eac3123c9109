"""The operator process: Kopf handlers, the reconciler, the watch cache, leader election,
the gate webhook and metrics."""
