"""Real services hotpath starts itself: redis-server, Apache Kafka (KRaft) and Tansu.

The test fixtures and ``hotpath demo`` use these to run against real brokers and a real
Redis on loopback, each on a free port, each with its data and log in a work directory.
"""

from __future__ import annotations

from hotpath.services.errors import ServiceError, ServiceMissing, ServiceStartError
from hotpath.services.kafka_broker import KafkaBroker
from hotpath.services.ports import free_port, wait_for_port
from hotpath.services.redis_server import RedisServer
from hotpath.services.tansu import TansuBroker

__all__ = [
    "KafkaBroker",
    "RedisServer",
    "ServiceError",
    "ServiceMissing",
    "ServiceStartError",
    "TansuBroker",
    "free_port",
    "wait_for_port",
]
