"""Admin calls shared by every Kafka-compatible broker we start: readiness and topic creation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

_T = TypeVar("_T")
# Between metadata attempts while a broker boots: short, since a JVM broker becomes ready
# some hundreds of ms after its port opens and every wasted interval is test time.
_RETRY_S = 0.2
# Topic creation on one node takes ~100 ms; 30 s only matters when the broker is sick.
_TOPIC_TIMEOUT_S = 30.0


def run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion on a private event loop in a worker thread.

    Service ``start()`` methods are synchronous and may run in a thread whose event loop
    exists but is idle (pytest-asyncio's session loop between tests); ``asyncio.run`` there
    would replace that thread's current loop, a worker thread leaves it alone.

    >>> async def answer() -> int:
    ...     return 42
    >>> run_sync(answer())
    42
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def wait_for_metadata(
    bootstrap: str, deadline: float, alive: Callable[[], bool] = lambda: True
) -> bool:
    """Retry a metadata request until the broker lists itself and a controller.

    False when ``time.monotonic()`` passes ``deadline`` or ``alive()`` turns false.

    >>> from hotpath.services.ports import free_port
    >>> run_sync(wait_for_metadata(f"127.0.0.1:{free_port()}", 0.0))
    False
    """
    while time.monotonic() < deadline and alive():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            if cluster["brokers"] and cluster["controller_id"] >= 0:
                return True
        except KafkaError:
            pass
        finally:
            await admin.close()
        await asyncio.sleep(_RETRY_S)
    return False


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create ``name`` with replication 1 and wait until every partition has a leader.

    A topic that already exists is not an error: session fixtures may share names.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(name, partitions, 1)])
        for topic, code, *_ in response.topic_errors:
            error = for_code(code)
            if code != 0 and error is not TopicAlreadyExistsError:
                raise error(f"creating topic {topic!r}")
        deadline = time.monotonic() + _TOPIC_TIMEOUT_S
        while time.monotonic() < deadline:
            if _all_led(await admin.describe_topics([name])):
                return
            await asyncio.sleep(_RETRY_S)
        raise TimeoutError(f"topic {name!r} still has partitions without a leader")
    finally:
        await admin.close()


def _all_led(described: list[dict[str, Any]]) -> bool:
    """Whether a described topic exists and each of its partitions has a leader.

    >>> _all_led([{"error_code": 0, "partitions": [{"leader": 1}, {"leader": 1}]}])
    True
    >>> _all_led([{"error_code": 0, "partitions": [{"leader": -1}]}])
    False
    >>> _all_led([{"error_code": 3, "partitions": []}])
    False
    """
    if not described or described[0]["error_code"] != 0:
        return False
    partitions = described[0]["partitions"]
    return bool(partitions) and all(p["leader"] >= 0 for p in partitions)
