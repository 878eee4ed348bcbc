"""plan/batching: batches respect the count and the byte limit."""

from __future__ import annotations

from connector.plan.batching import Batcher
from tests.batch_items import brevo_items


def test_batches_respect_the_count_limit() -> None:
    batcher = Batcher(200, 512 * 1024, lambda n: 13 + n)
    out = [b for b in (batcher.add(it) for it in brevo_items(450, 10)) if b]
    last = batcher.flush()
    assert last is not None
    assert [len(b.items) for b in [*out, last]] == [200, 200, 50]


def test_batches_respect_the_byte_limit() -> None:
    limit = 512 * 1024
    batcher = Batcher(200, limit, lambda n: 13 + n)
    items = brevo_items(100, 20_000)
    out = [b for b in (batcher.add(it) for it in items) if b]
    last = batcher.flush()
    assert last is not None
    for b in [*out, last]:
        assert sum(i.size for i in b.items) + 13 + len(b.items) <= limit
    assert sum(len(b.items) for b in [*out, last]) == 100
    assert len(out[0].items) == 26  # 26 x 20,001 B + overhead <= 512 KiB < 27 x ...
