"""Which live patches wait for a person before they change a run: the review policy.

A patch that passes validation is applied at once unless the policy says it needs a human.
Then the driver logs `patch.held` (with the reason) instead of applying it, and the run goes
on along its current graph; it does not finish while the patch waits. An approver's
`patch.approved` makes the driver apply it (validated again, on the version the run is at
by then), and `patch.rejected` drops it.

    agent = "effectful"   agent patches that add or change an effectful node need a person
    agent = "all"         every agent patch does
    agent = "none"        agent patches apply at once (what `aobc run` does)
    human = True          human patches need a second person too
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aobc.ir import Effect

if TYPE_CHECKING:
    from aobc.frontend.overlay import Version
    from aobc.frontend.patchfile import Patch

AGENT_RULES: Final = ("none", "effectful", "all")


@dataclass(frozen=True, slots=True)
class ReviewPolicy:
    agent: str = "effectful"
    human: bool = False

    def __post_init__(self) -> None:
        if self.agent not in AGENT_RULES:
            raise ValueError(f"agent review rule is one of {', '.join(AGENT_RULES)}")

    def reason(self, patch: Patch, version: Version) -> str | None:
        """Why `patch` (which produced `version`) needs a person, or None."""
        if patch.author_kind == "agent":
            if self.agent == "all":
                return "every agent patch needs an approver"
            if self.agent == "effectful":
                effectful = effectful_nodes(patch, version)
                if effectful:
                    return "agent patch adds or changes effectful nodes: " + ", ".join(effectful)
            return None
        if self.human and patch.author_kind == "human":
            return "human patches need a second person"
        return None


def effectful_nodes(patch: Patch, version: Version) -> list[str]:
    """Nodes that `patch` introduced or changed in `version` whose effect is effectful."""
    out = []
    for node_id, origin in version.provenance.nodes.items():
        if origin.patch_id != patch.id:
            continue
        node = version.workflow.node(node_id)
        if node is not None and node.effect is Effect.EFFECTFUL:
            out.append(node_id)
    return sorted(out)
