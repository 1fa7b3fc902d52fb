"""An idempotent producer for faust apps: a send that aiokafka retries is written once.

faust-streaming 0.15.3 asks aiokafka for an idempotent producer only inside transactions
(``transport/drivers/aiokafka.py``, ``Producer._settings_extra``); otherwise a produce request
whose acknowledgement was lost is sent again and the output is written twice. The runtime's app
turns idempotence on for every send (``acks=all`` follows from it), which the brokers accept with
Write on the topic (Kafka >= 3.0; IdempotentWrite on the cluster before that).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers.aiokafka import Producer
from faust.types import ProducerT


class IdempotentProducer(Producer):
    """faust's aiokafka producer with ``enable_idempotence`` (and ``acks=all``) always on."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class IdempotentApp(faust.App):
    """A ``faust.App`` whose producer is idempotent; otherwise the same app."""

    def _new_producer(self) -> ProducerT:
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)
