"""Parts of the local broker's start-up that can be checked without starting it."""

from __future__ import annotations

import re
import socket

import pytest

from devkit import localkafka
from devkit.localkafka import _cluster_id, free_ports


def test_cluster_ids_never_look_like_an_option() -> None:
    # One base64 id in 64 starts with "-", which the storage tool then reads as an option.
    ids = {_cluster_id() for _ in range(2_000)}
    assert len(ids) == 2_000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)


def test_ports_chosen_together_are_distinct() -> None:
    for _ in range(50):
        ports = free_ports(6)
        assert len(set(ports)) == 6


@pytest.mark.kafka
def test_a_port_taken_before_the_broker_binds_it_is_chosen_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process takes a chosen port between the choice and the broker's bind: the start
    is tried again with fresh ports instead of failing the run."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    calls: list[list[int]] = []

    def first_one_taken(count: int) -> list[int]:
        ports = free_ports(count)
        if not calls:
            ports[0] = taken.getsockname()[1]
        calls.append(ports)
        return ports

    monkeypatch.setattr(localkafka, "free_ports", first_one_taken)
    try:
        with localkafka.LocalKafka.start() as cluster:
            assert len(calls) == 2
            assert cluster.bootstrap_servers == f"127.0.0.1:{calls[1][0]}"
    finally:
        taken.close()
