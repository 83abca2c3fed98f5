"""The life of an execution, owned in one place.

- `executions.py`: every state change of an execution as a named operation over the table of
  allowed transitions (`domain.TRANSITIONS`); nothing else writes a status.
- `events.py`: each transition is published as an in-process `LifecycleEvent`; metrics, the
  status page and notifications subscribe instead of hooking in their own way.
- `nodes.py`: this node in the registry, its heartbeat, its stop mark, and the one liveness rule
  every judge of other nodes uses (the recovery sweep, the delivery ledger, the daemon).
- `fencing.py`: a run's side effects happen only while this node still owns it.

Layering: lifecycle imports the store and the domain only; the scheduler and the engine import
lifecycle.
"""
