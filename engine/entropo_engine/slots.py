"""Which llama-server slot a sequence runs in, so each conversation's next turn finds its own cached prefix.

llama-server keeps one KV cache per slot and, left to choose, gives a request the idle slot whose cached prompt
shares more than 10% of it. Under concurrency that steals conversations: prompts that share only the chat
template's system prompt take the slot of the conversation that owns it, and that conversation's next turn is
prefilled from scratch (measured: a repeated prompt served with 0 of 39 tokens cached while 3 others arrived).
So the front picks the slot itself (`id_slot`), by what the choice keeps and what it throws away:

    score(slot) = reused - discarded = lcp - (len(cached) - lcp)

where lcp is the common prefix of the prompt with the slot's cached tokens (0 when the slot last ran another
model: llama-server clears a slot whose adapter changes). An empty slot scores 0. The idle slot with the
highest score wins, the least recently used among equals. A conversation's next turn (nearly all of its slot
reused) beats any other prompt that shares only a system prompt or a task with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Slot:
    model: str = ""
    tokens: list[int] = field(default_factory=list)  # the prompt and completion it last ran, as cached
    busy: bool = False
    last_used: int = 0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def slot_score(slot: Slot, model: str, prompt: list[int]) -> int:
    """Prompt tokens this slot saves minus cached tokens it throws away (the docstring's score)."""
    reused = common_prefix(slot.tokens, prompt) if slot.model == model else 0
    return reused - (len(slot.tokens) - reused)


class SlotTable:
    """The front's view of llama-server's slots: who runs where, and what each slot has cached."""

    def __init__(self, n: int):
        self.slots = [Slot() for _ in range(n)]
        self.clock = 0

    def choose(self, model: str, prompt: list[int]) -> int | None:
        """The idle slot to run `prompt` on (marked busy), or None when every slot is busy."""
        idle = [i for i, s in enumerate(self.slots) if not s.busy]
        if not idle:
            return None
        best = max(idle, key=lambda i: (slot_score(self.slots[i], model, prompt), -self.slots[i].last_used))
        self.slots[best].busy = True
        return best

    def release(self, index: int, model: str, tokens: list[int] | None) -> None:
        """The sequence on slot `index` finished; `tokens` is what the slot now caches (None: unknown, e.g. it
        failed, so nothing is assumed cached)."""
        self.clock += 1
        self.slots[index] = Slot(model=model if tokens else "", tokens=list(tokens or []), busy=False, last_used=self.clock)

    def clear(self) -> None:
        """llama-server restarted: every cache is empty (slots still busy stay busy until released)."""
        for s in self.slots:
            s.model, s.tokens = "", []
