"""The local Kafka broker (SPEC §8): Apache Kafka in KRaft combined mode (broker and controller,
one node) in a JVM of its own, listening on loopback only.

Its log lives on disk in `data_dir` (the CLI's `<data root>/kafka`), so a broker restarted on the
same folder keeps its topics and offsets, and a past Bronze partition can be re-read from it.
The jars come from the project's JVM cache (`lib/engine/jvm.py`, bundle `kafka`); a run never downloads.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from retail_assets.lib.engine.jvm import classpath
from retail_assets.lib.sources.kafka import KafkaUnavailable

HOST = "127.0.0.1"
HEAP = "320m"
NODE_ID = 1
STOP_TIMEOUT_S = 30.0

# A one-node development broker. Replication factors of the internal topics must be 1 (there is
# one replica), and one partition each is plenty. Retention is unlimited: Bronze re-reads past
# partitions from the log, and the generated events carry timestamps weeks old (time-based
# retention would delete them within a minute of the start). Any timestamp is accepted, as the
# generator sends late and future events.
SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={node_id}@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs={log_dir}
num.partitions=3
auto.create.topics.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.ms=-1
log.message.timestamp.before.max.ms=9223372036854775807
log.message.timestamp.after.max.ms=9223372036854775807
num.network.threads=2
num.io.threads=4
"""

# Warnings and errors only, on stderr, which goes to the broker's log file.
LOG4J2_PROPERTIES = """\
status = error
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = STDERR
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # as a server binds it: connections of an earlier broker still in TIME_WAIT do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def locked_by_another_process(path: Path) -> bool:
    """Whether another process holds the lock Kafka takes on its log directory (`.lock`)."""
    if not path.exists():
        return False
    with open(path, "r+b") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.lockf(f, fcntl.LOCK_UN)
    return False


def cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding. It may start
    # with '-', so the storage tool is given it as `--cluster-id=<id>`, never as a separate word.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _terminate(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM (Kafka shuts down cleanly and flushes its log), then SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _discard(processes: list[subprocess.Popen], private: tempfile.TemporaryDirectory | None) -> None:
    """Stop what a discarded (or never stopped) broker left running, then remove its private folder."""
    for process in processes:
        _terminate(process, 5.0)
    processes.clear()
    if private is not None:
        private.cleanup()


class LocalBroker:
    """Start and stop one broker JVM; usable as a context manager (which stops it, keeping its log).

    Without `data_dir` the log goes to a private temporary folder that survives `stop()` and
    `start()` and is removed by `close()` or when the object is discarded. The port stays the same
    across restarts of one object, so clients configured with it reconnect after an outage.
    """

    def __init__(
        self, port: int | None = None, *, data_dir: Path | None = None, log_path: Path | None = None, heap: str = HEAP
    ) -> None:
        self.port = port or free_port()
        self.controller_port: int | None = None
        self.heap = heap
        self._private = None if data_dir else tempfile.TemporaryDirectory(prefix="retail-kafka-")
        self.data_dir = Path(data_dir or self._private.name).resolve()
        self.log_path = Path(log_path) if log_path else self.data_dir / "broker.log"
        self._process: subprocess.Popen | None = None
        self._running: list[subprocess.Popen] = []
        self._discard = weakref.finalize(self, _discard, self._running, self._private)

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    def start(self, timeout: float = 60.0) -> str:
        if self._process is not None and self._process.poll() is None:
            return self.bootstrap_servers
        jars = classpath("kafka")  # MissingJvmArtifacts names the command that fetches them
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_free()
        config = self._write_config()
        if not (self.log_dir / "meta.properties").exists():
            self._format(jars, config)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        output_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            command = self._java(jars, "kafka.Kafka", str(config))
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._running.append(self._process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._forget()
                raise KafkaUnavailable(
                    f"the Kafka broker exited with code {code} while starting on {self.bootstrap_servers} ({self.data_dir}); {self._tail(output_from)}"
                )
            if self._answers():
                return self.bootstrap_servers
            time.sleep(0.1)
        self.stop()
        raise KafkaUnavailable(
            f"the Kafka broker did not answer on {self.bootstrap_servers} within {timeout:.0f}s; {self._tail(output_from)}"
        )

    def stop(self) -> None:
        """Stop the JVM gracefully, killing it if it does not exit within `STOP_TIMEOUT_S`; the log stays."""
        if self._process is None:
            return
        _terminate(self._process, STOP_TIMEOUT_S)
        self._forget()

    def close(self) -> None:
        """Stop the broker and remove its private folder (a given `data_dir` is kept)."""
        self.stop()
        self._discard()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _forget(self) -> None:
        if self._process in self._running:
            self._running.remove(self._process)
        self._process = None

    def _check_free(self) -> None:
        if locked_by_another_process(self.log_dir / ".lock"):
            raise KafkaUnavailable(
                f"another Kafka broker is running on {self.data_dir}; stop it first or use another data root"
            )
        if not port_is_free(self.port):
            raise KafkaUnavailable(
                f"port {self.port} on {HOST} is busy, so the Kafka broker cannot listen there; stop what uses it or choose another port"
            )
        # Internal to the broker: a new one on every start, so it never waits for an old one.
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()

    def _write_config(self) -> Path:
        properties = SERVER_PROPERTIES.format(
            node_id=NODE_ID, host=HOST, port=self.port, controller_port=self.controller_port, log_dir=self.log_dir
        )
        (self.data_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        config = self.data_dir / "server.properties"
        config.write_text(properties)
        return config

    def _java(self, jars: list[Path], main: str, *args: str) -> list[str]:
        return [
            "java", f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp", os.pathsep.join(str(j) for j in jars), main, *args,
        ]  # fmt: skip

    def _format(self, jars: list[Path], config: Path) -> None:
        command = self._java(
            jars,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id()}",
            "--config",
            str(config),
            "--ignore-formatted",
        )
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
            raise KafkaUnavailable(
                f"formatting the Kafka log directory {self.log_dir} failed (exit code {done.returncode}):\n{tail}"
            )

    def _answers(self) -> bool:
        try:
            # log_level 2: the refused connections of a broker still starting are expected
            admin = AdminClient(
                {"bootstrap.servers": self.bootstrap_servers, "socket.timeout.ms": 1000, "log_level": 2}
            )
            return bool(admin.list_topics(timeout=1).brokers)
        except KafkaException:
            return False

    def _tail(self, offset: int, lines: int = 15) -> str:
        # stack frames bury the messages: keep the log lines and each exception's "Caused by"
        return log_tail(self.log_path, offset, lines, keep=lambda line: not line.lstrip().startswith(("at ", "... ")))


def log_tail(path: Path, offset: int, lines: int = 15, keep=lambda line: True) -> str:
    """The last `lines` lines (those `keep` accepts) a server wrote to its log `path` from `offset`
    on, for an error message saying why it did not start."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace").strip()
    except OSError:
        text = ""
    kept = [line for line in text.splitlines() if keep(line)]
    if not kept:
        return f"it wrote nothing to {path}"
    return f"the last lines of {path}:\n" + "\n".join(kept[-lines:])


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

    Returns where each landed, `{index: "topic/partition/offset"}` (the Bronze `_source`), from
    the broker's delivery reports. Any number of messages: when the client's queue
    (`queue_max_messages`) is full, sending waits for acknowledgements, up to `timeout` seconds
    without progress.
    """
    producer = Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "acks": "all",
            # Keyed events hash as with librdkafka's default; a keyless one (a defect) goes to one
            # fixed partition instead of a random one, so the same messages land on the same
            # offsets every time (a replayed demo, the engines' parity test).
            "partitioner": "consistent",
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
                producer.produce(
                    topic, key=key, value=m.value, timestamp=m.timestamp_ms, on_delivery=on_delivery(m.index)
                )
                break
            except BufferError:
                # the client's queue is full: let the broker acknowledge some first
                if time.monotonic() > deadline:
                    raise KafkaUnavailable(
                        f"{topic}: no message acknowledged for {timeout:.0f}s with {len(producer)} queued"
                    ) from None
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    remaining = producer.flush(timeout)
    if remaining or failures:
        raise KafkaUnavailable(
            f"{remaining} of {sent} messages unacknowledged and {len(failures)} failed producing to {topic}: {failures[:3]}"
        )
    return placed
