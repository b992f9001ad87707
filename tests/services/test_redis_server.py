"""RedisServer against the real redis-server binary."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from hotpath.services.errors import ServiceMissing, ServiceStartError
from hotpath.services.ports import free_port, port_open
from hotpath.services.redis_server import RedisServer


def test_start_ping_stop_and_restart_on_the_same_port(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    port = server.port
    with server:
        client = redis.Redis.from_url(server.url)
        assert client.ping() is True
        client.set("k", "v")
        server.stop()
        assert not port_open("127.0.0.1", port)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert server.port == port
        assert client.ping() is True
        # No persistence: a restart comes back empty.
        assert client.get("k") is None
        client.close()
    assert not server.running
    assert "Ready to accept connections" in server.log_path.read_text()


def test_explicit_port_and_url(tmp_path: Path) -> None:
    port = free_port()
    server = RedisServer(tmp_path, port=port)
    assert server.url == f"redis://127.0.0.1:{port}/0"
    with server:
        assert port_open("127.0.0.1", port)


def test_start_fails_clearly_when_the_port_is_taken(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "a") as first:
        second = RedisServer(tmp_path / "b", port=first.port)
        with pytest.raises(ServiceStartError) as info:
            second.start()
        assert info.value.service == "redis-server"
        assert info.value.log_path == tmp_path / "b" / "redis.log"
        assert "Address already in use" in str(info.value)
        assert not second.running


def test_missing_binary_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceMissing) as info:
        RedisServer(tmp_path).start()
    assert str(info.value) == (
        "redis-server not found; install it with: apt-get install redis-server"
    )


async def test_shared_fixture_survives_an_outage(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    assert await redis_client.ping() is True
    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        await redis_client.ping()
    redis_server.start()
    assert await redis_client.ping() is True


async def test_redis_client_starts_from_an_empty_database(
    redis_client: aioredis.Redis,
) -> None:
    assert await redis_client.dbsize() == 0
    await redis_client.set("left-behind", "1")
