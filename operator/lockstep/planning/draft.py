"""One planning pass's scratch space, and how every pass ends: conditions set, a Decision made.

Every step of the chain (and the recording of outcomes before it) notes Events and edits the
status on a `Draft`; `finish` applies the Ready/Reconciling/Stalled state and freezes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lockstep import conditions, constants
from lockstep.constants import Reason
from lockstep.jobs.naming import JobRequest
from lockstep.planning.facts import Decision, Event, EventType, Observed
from lockstep.status import Condition, MigrationStatus


@dataclass
class Draft:
    """Mutable scratch space for one planning pass; frozen into a Decision at the end."""

    observed: Observed
    status: MigrationStatus
    events: list[Event] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)

    def note(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))


def finish(
    draft: Draft,
    state: conditions.State,
    create: JobRequest | None = None,
    requeue: float | None = None,
) -> Decision:
    observed, status = draft.observed, draft.status
    previous = list(observed.status.get("conditions", []))
    # Conditions set earlier in this pass (Drifted) are kept; Ready/Reconciling/Stalled follow.
    status["conditions"] = conditions.apply_state(
        status.get("conditions", previous), state, observed.generation, observed.now
    )
    _note_transition(draft, previous, state)
    return Decision(
        status=status,
        create_job=create,
        delete_jobs=tuple(draft.delete_jobs),
        events=tuple(draft.events),
        requeue_after=requeue,
    )


def _note_transition(draft: Draft, previous: list[Condition], state: conditions.State) -> None:
    """A Warning the first time the resource stalls, so nothing ever stops silently."""
    was_stalled = conditions.is_true(previous, constants.STALLED)
    before = conditions.find(previous, constants.READY)
    if state.stalled and (not was_stalled or (before or {}).get("reason") != state.reason):
        draft.note("Warning", Reason.STALLED, f"{state.reason}: {state.message}")
