"""A Milvus server on this machine for tests and benchmarks, without Docker.

The PyPI `milvus` package ships a standalone Milvus server (embedded etcd, local storage,
rocksmq); `start_standalone` runs it on free ports of 127.0.0.1 in a folder of its own and
returns its URI. Milvus Lite (a local file) needs no server: its URI is the file's path.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("core.index")


class MilvusStartError(RuntimeError):
    """The standalone server could not be started (the message says why)."""


@dataclass
class LocalMilvus:
    """A running standalone server: its URI, version and data folder."""

    uri: str
    version: str
    data_dir: Path
    server: Any

    def stop(self) -> None:
        self.server.stop()


def start_standalone(data_dir: Path, timeout_s: float = 180.0) -> LocalMilvus:
    """Start the `milvus` package's standalone server with its data under `data_dir`.

    Raises:
        MilvusStartError: the package is missing or the server did not come up.
    """
    try:
        import milvus
    except ImportError as exc:
        raise MilvusStartError(f"the PyPI `milvus` package is not installed ({exc})") from None
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = milvus.MilvusServer(data_dir=str(data_dir), wait_for_started=False)
    write_config = server.config.write_config

    def write_with_etcd_ports() -> None:
        # The package finds free ports for every service but the embedded etcd's peer port
        # (2380, fixed in etcd's defaults): give etcd a config file naming free ones, so two
        # servers (a test's and a benchmark's, say) can run side by side.
        write_config()
        cfg_dir = Path(server.config.base_data_dir) / "configs"
        client, peer = int(server.config.get("etcd_port")), _free_port()
        etcd = cfg_dir / "etcd.yaml"
        etcd.write_text(f"name: default\n"
                        f"listen-client-urls: http://127.0.0.1:{client}\n"
                        f"advertise-client-urls: http://127.0.0.1:{client}\n"
                        f"listen-peer-urls: http://127.0.0.1:{peer}\n"
                        f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
                        f"initial-cluster: default=http://127.0.0.1:{peer}\n", encoding="utf-8")
        main = cfg_dir / "milvus.yaml"
        text = main.read_text(encoding="utf-8")
        main.write_text(text.replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd}\n", 1),
                        encoding="utf-8")

    server.config.write_config = write_with_etcd_ports
    try:
        server.start()
        server.wait_started(timeout=int(timeout_s * 1000))
    except Exception as exc:
        with contextlib.suppress(Exception):
            server.stop()
        raise MilvusStartError(f"the standalone Milvus server did not start: {exc} "
                               f"(logs in {data_dir / 'logs'})") from None
    port = int(server.config.get("proxy_port"))
    logger.info("standalone Milvus %s on 127.0.0.1:%d (%s)", milvus.__version__, port, data_dir)
    return LocalMilvus(f"http://127.0.0.1:{port}", str(milvus.__version__), data_dir, server)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def standalone(data_dir: Path) -> Iterator[LocalMilvus]:
    """`start_standalone` as a context manager that stops the server at the end."""
    srv = start_standalone(data_dir)
    try:
        yield srv
    finally:
        srv.stop()
