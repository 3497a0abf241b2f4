"""The llamacpp runtime's slot choice (slots.py), a pure table: each conversation's next turn lands on the slot
that caches it, prompts sharing only a system prompt do not take it, and an adapter's cache is not the base's."""

from entropo_engine.slots import SlotTable, common_prefix, slot_score, Slot

SYSTEM = list(range(100, 124))  # a chat template's system prompt, shared by every conversation


def conversation(tag: int, length: int) -> list[int]:
    return SYSTEM + [1000 * tag + i for i in range(length)]


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2, 3]) == 2


def test_score_is_reused_minus_discarded_and_zero_across_models():
    slot = Slot(model="base", tokens=conversation(1, 31))  # 55 cached tokens
    assert slot_score(slot, "base", conversation(1, 15)) == 39 - 16
    assert slot_score(slot, "base", conversation(2, 13)) == 24 - 31
    assert slot_score(slot, "lora-a", conversation(1, 15)) == -55
    assert slot_score(Slot(), "base", conversation(1, 15)) == 0


def test_a_conversations_next_turn_finds_its_slot_though_others_arrive_first():
    table = SlotTable(4)
    first = table.choose("base", conversation(1, 15))
    table.release(first, "base", conversation(1, 31))  # prompt + 16 generated tokens
    others = [table.choose("base", conversation(tag, 13)) for tag in (2, 3, 4)]  # they share only SYSTEM
    assert first not in others
    assert table.choose("base", conversation(1, 15)) == first


def test_next_turn_extends_the_cached_conversation():
    table = SlotTable(2)
    a, b = table.choose("base", conversation(1, 200)), table.choose("base", conversation(2, 200))
    table.release(a, "base", conversation(1, 300))
    table.release(b, "base", conversation(2, 300))
    assert table.choose("base", conversation(2, 500)) == b
    assert table.choose("base", conversation(1, 500)) == a


def test_busy_slots_are_never_chosen_and_none_when_all_are_busy():
    table = SlotTable(2)
    assert {table.choose("base", [1]), table.choose("base", [1])} == {0, 1}
    assert table.choose("base", [1]) is None
    table.release(1, "base", [1, 2])
    assert table.choose("base", [1]) == 1


def test_among_equal_scores_the_least_recently_used_slot_is_taken():
    table = SlotTable(3)
    for i in range(3):
        assert table.choose("base", conversation(i, 5)) == i
    for i in (2, 0, 1):  # released in this order: slot 2 is the least recently used
        table.release(i, "base", conversation(i, 10))
    # An unrelated prompt of its own system prompt: every slot scores -34.
    assert table.choose("base", [7] * 40) == 2


def test_an_adapters_cache_is_not_reused_by_the_base_model():
    table = SlotTable(2)
    s = table.choose("lora-a", conversation(1, 15))
    table.release(s, "lora-a", conversation(1, 31))
    assert table.choose("base", conversation(1, 15)) != s  # the empty slot (0) beats discarding 55 tokens


def test_a_failed_sequence_leaves_nothing_cached_and_clear_empties_every_slot():
    table = SlotTable(2)
    s = table.choose("base", conversation(1, 15))
    table.release(s, "base", None)
    assert table.slots[s].tokens == [] and not table.slots[s].busy
    t = table.choose("base", conversation(2, 15))
    table.release(t, "base", conversation(2, 20))
    busy = table.choose("base", [5])
    table.clear()
    assert all(slot.tokens == [] for slot in table.slots)
    assert table.slots[busy].busy  # still running: released by its own request
