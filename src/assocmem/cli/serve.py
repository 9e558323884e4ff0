"""``assocmem serve``: the live explorer (a local web page) over an experiment file."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from assocmem.cli.app import app, console
from assocmem.errors import InputError

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn; a port in use or an unknown host is an
    InputError now, before the banner (uvicorn itself would log and exit with status 3)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise InputError(
            f"--host {host}: no such address ({e.strerror}); use 127.0.0.1 for this machine"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port} ({e.strerror}); "
            f"another program may hold the port: try --port {port + 1 if port < 65535 else 8000}"
        ) from None
    return sock


@app.command()
def serve(
    file: Annotated[
        Path | None,
        typer.Argument(help="Experiment file (.toml) to start from (default: the seed)."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; loopback unless you mean to share it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Start the explorer: edit the graph, the sentence, the probe and the
    temperatures in a browser and see the logits, heat maps and PASS/FAIL update.

    FILE is read once, now; the page reads no other file.
    """
    import uvicorn

    from assocmem.experiment import load_experiment
    from assocmem.views.server import create_app

    if not 0 < port < 65536:
        raise InputError(f"--port must be between 1 and 65535, got {port}")
    exp = load_experiment(file) if file is not None else None
    loopback = _is_loopback(host)
    # on loopback, accept only loopback Host headers (DNS rebinding); shared, any name
    application = create_app(exp, allowed_hosts=[*LOOPBACK_NAMES, host] if loopback else None)
    sock = _listen(host, port)
    if not loopback:
        console.print(
            f"[bold yellow]warning:[/] listening on {escape(host)}: anyone who can reach this "
            "machine can use the explorer"
        )
    shown = f"[{host}]" if ":" in host else host
    console.print(f"assocmem explorer on http://{shown}:{port}/  (Ctrl-C stops it)", markup=False)
    config = uvicorn.Config(application, host=host, port=port, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
