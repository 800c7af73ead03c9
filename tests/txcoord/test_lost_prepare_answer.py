"""A PREPARE whose answer is lost: the branch may be prepared, so ABORT is logged.

A TCP proxy between the coordinator and one participant forwards PREPARE
TRANSACTION to the server, waits for the server's answer and drops it with the
connection, as a network failure at the worst moment would. The branch is then
prepared on the server while the coordinator only saw a broken connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from txcoord import Coordinator, Decision, DecisionLog, Outcome, PrepareFailedError

ADD_ONE = "UPDATE item SET qty = qty + 1 WHERE id = 1"


class AnswerLosingProxy:
    """Forwards TCP to a PostgreSQL port; loses the first answer to a PREPARE."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lost = threading.Event()
        self._armed = True
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            state = {"losing": False}
            threading.Thread(
                target=self._to_server, args=(client, server, state), daemon=True
            ).start()
            threading.Thread(
                target=self._to_client, args=(server, client, state), daemon=True
            ).start()

    def _to_server(self, client: socket.socket, server: socket.socket, state) -> None:
        with contextlib.suppress(OSError):
            while chunk := client.recv(65536):
                with self._lock:
                    if self._armed and b"PREPARE TRANSACTION" in chunk:
                        self._armed = False
                        state["losing"] = True
                server.sendall(chunk)

    def _to_client(self, server: socket.socket, client: socket.socket, state) -> None:
        with contextlib.suppress(OSError):
            while chunk := server.recv(65536):
                if state["losing"]:  # the server's answer to the PREPARE
                    self.lost.set()
                    break
                client.sendall(chunk)
        for sock in (client, server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


def add_one_both(tx):
    with tx:
        for name in ("a", "b"):
            tx.connection(name).exec_driver_sql(ADD_ONE)


@pytest.fixture
def proxied_a(txdb) -> Iterator[tuple[AnswerLosingProxy, sa.Engine]]:
    """Participant "a" reached through the proxy."""
    url = sa.engine.make_url(txdb.urls["a"])
    proxy = AnswerLosingProxy(url.port)
    engine = sa.create_engine(url.set(port=proxy.port), poolclass=sa.pool.NullPool)
    try:
        yield proxy, engine
    finally:
        engine.dispose()
        proxy.close()


def test_a_prepare_whose_answer_is_lost_logs_abort_and_recovery_rolls_it_back_at_once(
    txdb, prefix, proxied_a
):
    proxy, engine_a = proxied_a
    coordinator = Coordinator(
        {"a": engine_a, "b": txdb.engines["b"]}, txdb.log, prefix=prefix
    )
    tx = coordinator.transaction()
    with pytest.raises(PrepareFailedError) as failed:
        add_one_both(tx)

    assert proxy.lost.is_set()
    assert failed.value.participant == "a"
    assert tx.outcome is Outcome.ABORTED
    # The server did prepare the branch the coordinator could not hear about.
    assert txdb.prepared(prefix) == {"a": [f"{prefix}:{tx.id}:a"], "b": []}
    assert txdb.is_locked("a")
    assert DecisionLog(txdb.log).get({tx.id}) == {tx.id: Decision.ABORT}

    # ABORT is in the log, so recovery need not wait for the transaction timeout.
    patient = txdb.coordinator(prefix).recovery(abort_after=3600).run_once()
    assert patient.rolled_back == [f"{prefix}:{tx.id}:a"]
    assert txdb.prepared(prefix) == {"a": [], "b": []}
    assert (txdb.qty("a"), txdb.qty("b")) == (0, 0)
    txdb.assert_unlocked()
