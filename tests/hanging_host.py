"""A host process that takes one request and never answers it (as one stuck on a note would).

Its own module, importing nothing heavy: a spawned process imports the module of its target.
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any


def serve_and_hang(connection: Connection, settings: Any) -> None:
    connection.send(("ready",))
    connection.recv()
    time.sleep(3600)
