"""Parts of the local broker's start-up that can be checked without starting it."""

from __future__ import annotations

import re

from devkit.localkafka import _cluster_id


def test_cluster_ids_never_look_like_an_option() -> None:
    # One base64 id in 64 starts with "-", which the storage tool then reads as an option.
    ids = {_cluster_id() for _ in range(2_000)}
    assert len(ids) == 2_000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)
