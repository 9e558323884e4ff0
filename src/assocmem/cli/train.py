"""``assocmem train``, ``sample``, ``inspect``: learned associative-memory language models."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from assocmem.cli.app import app, console, err_console
from assocmem.errors import InputError, did_you_mean, write_atomic

MAX_SAMPLE = 100_000  # tokens per `sample`: the whole text is held and printed at the end


@app.command()
def train(
    config: Path = typer.Argument(..., help="TOML run config (see examples/lm/)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the last checkpoint in out_dir."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Start over in an out_dir that holds a run, replacing its checkpoint.",
    ),
    max_iters: int = typer.Option(0, "--max-iters", help="Override [train] max_iters (0: keep)."),
    compress: str = typer.Option(
        "", "--compress", help="Override [train] compress: none or zipnn ('': keep)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a MemLM or the GPT baseline; run under `torchrun --nproc_per_node N` for several processes."""
    from assocmem.lm import checkpoint as ckpt
    from assocmem.lm.train import DistEnv, Interrupted, load_config, preflight
    from assocmem.lm.train import train as run_train
    from assocmem.settings import SettingsError, read_toml

    if resume and force:
        raise InputError("--resume continues the run in out_dir, --force replaces it: give one.")
    cfg = load_config(config)
    if max_iters:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_iters=max_iters))
    if compress:
        cfg = dataclasses.replace(
            cfg, train=dataclasses.replace(cfg.train, compress=_codec(compress))
        )
    env = DistEnv.from_env()
    try:
        preflight(cfg, env, resume=resume, refuse_existing=not force)
        if force and env.master:
            ckpt.remove_checkpoint(cfg.out_dir)
        r = run_train(cfg, resume=resume, progress=not quiet, log=console.print, env=env)
    except SettingsError as e:  # the machine, the run folder, the text: where the config asks it
        if e.file is not None:  # located already (in a checkpoint's JSON)
            raise
        raise e.located(config, read_toml(config, "training config")[1]) from None
    except Interrupted as stop:
        if env.master:
            _say_interrupted(stop, config, cfg.out_dir)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the training loop
        if env.master:
            saved = ckpt.checkpoint_json(cfg.out_dir)
            where = (
                f"the last checkpoint, {saved}, is intact"
                if saved.is_file()
                else "no checkpoint was written"
            )
            err_console.print(Text(f"interrupted at once: {where}."))
        raise typer.Exit(130) from None
    if r.rank == 0:
        console.print(
            f"done: val loss {r.val_loss:.4f}, {r.tokens_per_s:,.0f} tokens/s, checkpoint in {r.out_dir}"
        )


def _codec(name: str) -> str:
    """``--compress``'s value, checked against the codecs ``[train] compress`` takes."""
    from assocmem.lm.codec import CODECS

    if name not in CODECS:
        raise InputError(
            f"--compress must be one of {', '.join(CODECS)} (got {name!r}).{did_you_mean(name, CODECS)}"
        )
    return name


def _say_interrupted(stop, config: Path, out_dir: str) -> None:
    """What Ctrl-C left behind, and the command that continues the run."""
    if stop.saved is None:
        err_console.print(
            Text(
                f"interrupted after {stop.it} iterations: nothing trained yet, so no checkpoint was written."
            )
        )
        return
    err_console.print(
        Text(
            f"interrupted after iteration {stop.it}: its checkpoint is in {out_dir}.\n"
            f"resume with: assocmem train {config} --resume"
        )
    )


@app.command()
def sample(
    ckpt: Path = typer.Argument(..., help="Checkpoint folder (out_dir) or its ckpt.json."),
    prompt: str = typer.Option("\n", "--prompt", help="Text to continue."),
    tokens: int = typer.Option(
        300, "--tokens", min=1, max=MAX_SAMPLE, help="How many tokens to generate."
    ),
    temperature: float = typer.Option(
        0.8, "--temperature", help="Softmax temperature of the sampling (> 0)."
    ),
    top_k: int = typer.Option(
        200, "--top-k", min=0, help="Sample among the k likeliest tokens (0: all)."
    ),
    seed: int = typer.Option(1337, "--seed"),
) -> None:
    """Generate text from a trained checkpoint."""
    import torch

    from assocmem.lm.train import generate, load_model

    if not (0 < temperature < math.inf):
        raise InputError(f"--temperature must be a finite number > 0; got {temperature}.")
    model, tok, _ = load_model(ckpt)
    ids = tok.encode(prompt)
    if not ids:
        raise InputError("--prompt encodes to no tokens; give at least one character.")
    gen = torch.Generator().manual_seed(seed)
    out = generate(
        model, torch.tensor([ids]), tokens, temperature, top_k or None, gen
    )  # (1, T0 + tokens)
    console.print(tok.decode(out[0].tolist()), markup=False, highlight=False)


@app.command()
def inspect(
    ckpt: Path = typer.Argument(..., help="Checkpoint folder (out_dir) or its ckpt.json."),
    layer: int = typer.Option(-1, "--layer", min=-1, help="Only this layer (-1: all)."),
    limit: int = typer.Option(
        16,
        "--limit",
        min=0,
        help="Rows shown per layer and bank, clearest keys first (0: all); --export writes all.",
    ),
    top: int = typer.Option(3, "--top", min=1, help="Tokens per side of a line."),
    export: Path | None = typer.Option(None, "--export", help="Write every slot as a .graph file."),
) -> None:
    """List each slot of a MemLM as `KEY = VALUE` in tokens (space is ␣, newline ⏎; see docs/learned.md)."""
    from assocmem.lm.inspect import slot_lines, to_graph, token_names
    from assocmem.lm.train import load_model

    if export is not None and export.suffix != ".graph":  # before loading and spelling
        raise InputError(f"--export writes a .graph file; got {str(export)!r}.")
    model, tok, _ = load_model(ckpt)
    lines = slot_lines(model, token_names(tok), top=top)
    if layer >= 0:
        if layer >= model.config.n_layer:
            raise InputError(
                f"--layer {layer} is out of range: the model has layers 0..{model.config.n_layer - 1}."
            )
        lines = [sl for sl in lines if sl.layer == layer]
    table = Table(
        title=Text(f"slots of {ckpt}"), show_lines=False
    )  # Text: no rich markup in user data
    for col in ("layer", "bank", "slot", "KEY = VALUE"):
        table.add_column(col)
    groups: dict[tuple[int, str], list] = {}
    for sl in lines:
        groups.setdefault((sl.layer, sl.bank), []).append(sl)
    for rows in groups.values():
        rows = sorted(rows, key=lambda sl: -sl.key[0][1])
        for sl in rows[: limit or None]:
            table.add_row(str(sl.layer), sl.bank, str(sl.slot), Text(sl.line))
    console.print(table)
    if export is not None:
        write_atomic(export, to_graph(lines, str(ckpt)))
        console.print(Text(f"wrote {len(lines)} lines to {export}"))
