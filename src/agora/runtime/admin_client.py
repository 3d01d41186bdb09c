"""A synchronous admin client for one node: the `agora` CLI and the integration tests use it
to ask a node for its status and to send requests down the same coordinator path the CQL
server calls. It speaks the internode framing as a "client:" peer.

Owns: one connection and a private event loop, so callers need no asyncio of their own.
"""

from __future__ import annotations

import asyncio
import itertools

from agora.core import codec
from agora.core.config import DEFAULT_INTERNODE_PORT
from agora.core.errors import AgoraError
from agora.core.messages import ClientReq, ClientRsp
from agora.runtime.transport import TransportClient

DEFAULT_CALL_TIMEOUT_S = 15.0  # longer than any server-side request timeout


class AdminError(AgoraError):
    """An error answered by the node: `kind` is the server-side error class name
    (Unavailable, WriteTimeout, ReadTimeout, InvalidRequest ...), `details` its fields."""

    def __init__(self, kind: str, message: str, details: dict):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.details = details


class AdminClient:
    def __init__(self, host: str, cluster_name: str, port: int = DEFAULT_INTERNODE_PORT,
                 timeout_s: float = DEFAULT_CALL_TIMEOUT_S):
        self.host = host
        self.cluster_name = cluster_name
        self.port = port
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._conn: TransportClient | None = None
        self._ids = itertools.count(1)

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._loop.run_until_complete(self._conn.close())
            except Exception:
                pass
            self._conn = None
        self._loop.close()

    def call(self, op: str, args: dict, timeout_s: float | None = None):
        """Send one request and wait for its answer; raises AdminError for an error answer."""
        return self._loop.run_until_complete(
            asyncio.wait_for(self._call(op, args), timeout_s or self.timeout_s))

    async def _call(self, op: str, args: dict):
        if self._conn is None:
            conn = TransportClient(self.host, self.port, self.cluster_name)
            await conn.connect()
            self._conn = conn
        req_id = next(self._ids)
        await self._conn.send(codec.encode(ClientReq(req_id, op, args)))
        while True:
            rsp = codec.decode(await self._conn.recv())
            if isinstance(rsp, ClientRsp) and rsp.req_id == req_id:
                break
        if rsp.error is not None:
            kind, message, details = rsp.error
            raise AdminError(kind, message, details or {})
        return rsp.result
