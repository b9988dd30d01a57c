"""The lab's timeline: the product's journal reading (tested in tests/unit/test_timeline.py)
under the lab's names, and the verifier's pause on the initiator's clock."""

from __future__ import annotations

from iscsiha_lab import timeline

from iscsiha import timeline as product

FAULT_AT = 1_796_553_100.0


def test_the_lab_reads_journals_with_the_product_s_patterns() -> None:
    assert timeline.PATTERNS is product.PATTERNS
    assert timeline.events_from_journal is product.events_from_journal
    assert timeline.Event is product.Event
    assert timeline.table is product.table and timeline.first_of_each is product.first_of_each


def test_the_verifier_s_pause_is_placed_with_the_initiator_s_clock() -> None:
    probe = {"gap_from_wall": FAULT_AT + 2.0, "gap_to_wall": FAULT_AT + 12.5}
    events = timeline.events_from_probe(probe, FAULT_AT, offset=0.25)
    assert [(e.at, e.phase) for e in events] == [
        (1.75, "I/O: last write before the pause"), (12.25, "I/O: first write after the pause")]
    assert timeline.events_from_probe({}, FAULT_AT, 0.0) == []
