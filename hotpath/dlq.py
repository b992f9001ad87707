"""The dead-letter sink: bad messages go to ``<topic>.dlq`` with the original bytes.

Headers name the reason (the exact decode error) and where the message came from, so
an operator can find it and a producer team can fix it. Sends of one batch are issued
together and awaited together; the batch's offsets advance only once they are acked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from hotpath.wire import Reject

# The runtime's producer takes requests up to 4 MiB (its max_request_size); the consumer
# fetches up to 4 MiB per partition, so anything the loop can read fits, but a broker with a
# bigger message.max.bytes could still hand us more. Past this the DLQ gets the head of the
# message and a ``truncated`` header with the original size, rather than nothing at all.
MAX_DLQ_VALUE = 4 * 1024 * 1024 - 64 * 1024


class KafkaDlq:
    def __init__(self, producer: Any, topic: str, max_value: int = MAX_DLQ_VALUE) -> None:
        self._producer = producer  # aiokafka.AIOKafkaProducer
        self.topic = topic
        self._max_value = max_value

    async def send_many(self, rejects: Sequence[Reject]) -> None:
        futures = []
        for r in rejects:
            m = r.message
            headers = [
                ("reason", r.reason.encode()),
                ("source_topic", (getattr(m, "topic", None) or "").encode()),
                ("source_partition", str(m.partition).encode()),
                ("source_offset", str(m.offset).encode()),
            ]
            value = m.value or b""
            if len(value) > self._max_value:
                headers.append(("truncated", str(len(value)).encode()))
                value = value[: self._max_value]
            futures.append(await self._producer.send(
                self.topic, value=value, key=m.key, headers=headers))
        await asyncio.gather(*futures)
