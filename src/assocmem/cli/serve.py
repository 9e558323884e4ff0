"""``assocmem serve``: the live explorer (a local web page) over an experiment file."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

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
    if not loopback:
        console.print(
            f"[bold yellow]warning:[/] listening on {host}: anyone who can reach this "
            "machine can use the explorer"
        )
    shown = f"[{host}]" if ":" in host else host
    console.print(f"assocmem explorer on http://{shown}:{port}/  (Ctrl-C stops it)")
    uvicorn.run(application, host=host, port=port, log_level="warning")
