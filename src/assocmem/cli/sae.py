"""``assocmem sae train`` / ``assocmem sae inspect``: sparse autoencoders on a trained model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from assocmem.cli.app import app, console

sae_app = typer.Typer(
    help="Sparse autoencoders on a learned model's residual stream (docs/sae.md).",
    no_args_is_help=True,
)
app.add_typer(sae_app, name="sae")


@sae_app.command("train")
def train(
    ckpt: Path = typer.Argument(..., help="Checkpoint folder of `assocmem train`."),
    out: Path = typer.Option(..., "--out", help="Folder to write the SAE into."),
    hook: str | None = typer.Option(
        None,
        "--hook",
        help="Activation to decompose (default: the middle layer's output, layers.⌈L/2⌉.out).",
    ),
    kind: str = typer.Option("topk", "--kind", help="topk | relu"),
    expansion: int = typer.Option(4, "--expansion", help="Width = expansion · d."),
    k: int = typer.Option(16, "--k", help="topk: active latents per token."),
    l1: float = typer.Option(0.01, "--l1", help="relu: L1 coefficient."),
    steps: int = typer.Option(2000, "--steps"),
    windows_: int = typer.Option(1000, "--windows", help="Training windows (block_size tokens)."),
    val_windows: int = typer.Option(200, "--val-windows", help="Held-out windows to score on."),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train an SAE on CKPT's activation HOOK (training split); score it on the held-out split."""
    from assocmem.sae.lm import activations, load_lm, score_lm_sae, windows
    from assocmem.sae.model import SAEConfig, save_sae
    from assocmem.sae.train import SAETrainConfig, train_sae

    tc = SAETrainConfig(steps=steps, seed=seed)  # checked before any work
    run = load_lm(ckpt)
    hook = hook or f"layers.{(run.model.config.n_layer + 1) // 2}.out"
    d = run.model.config.n_embd
    cfg = SAEConfig(d, expansion * d, kind, k=k, l1=l1)
    T = run.model.config.block_size
    x = activations(run.model, windows(run.train_ids, T, windows_, seed=seed), hook)  # (N, d)
    sae, hist = train_sae(x, cfg, tc, progress=not quiet)
    scores = score_lm_sae(run, sae, hook, windows(run.val_ids, T, val_windows, seed=seed + 1))
    scores.pop("codes")
    save_sae(sae, out, {"checkpoint": str(ckpt), "hook": hook, "scores": scores})
    table = Table(title=f"{run.name} {hook}: {kind} SAE, width {cfg.width} (held-out text)")
    for col in ("explained var.", "L0", "dead", "CE clean", "CE zero", "CE sae", "loss recovered"):
        table.add_column(col, justify="right")
    s = scores
    table.add_row(
        f"{s['explained_variance']:.3f}",
        f"{s['l0']:.1f}",
        f"{s['dead_fraction']:.1%}",
        f"{s['ce_clean']:.4f}",
        f"{s['ce_zero']:.4f}",
        f"{s['ce_sae']:.4f}",
        f"{s['loss_recovered']:.3f}",
    )
    console.print(table)
    console.print(f"SAE written to {out} (dead during training: {hist.dead_fraction:.1%})")


@sae_app.command("inspect")
def inspect(
    sae_dir: Path = typer.Argument(..., help="Folder written by `assocmem sae train`."),
    feature: int = typer.Option(
        -1, "--feature", help="The latent to show (-1: list the most frequent)."
    ),
    top: int = typer.Option(8, "--top", help="Contexts and nearest tokens to show."),
    windows_: int = typer.Option(400, "--windows", help="Held-out windows to search."),
    html: Path | None = typer.Option(None, "--html", help="Write the feature's page here."),
) -> None:
    """List a feature's top activating contexts and nearest tokens (or the most frequent features)."""
    from assocmem.errors import InputError
    from assocmem.sae.features import feature_codes, feature_summary, feature_view
    from assocmem.sae.lm import load_lm
    from assocmem.sae.model import load_sae

    sae, meta = load_sae(sae_dir)
    run = load_lm(meta["checkpoint"])
    codes, ids = feature_codes(run, sae, meta["hook"], windows_)
    if feature < 0:
        if html is not None:
            raise InputError("--html needs --feature: the page shows one feature")
        table = Table(title=f"most frequent features of {sae_dir} ({meta['hook']})")
        for col in ("feature", "density", "max act."):
            table.add_column(col, justify="right")
        for i, dens, peak in feature_summary(codes, top):
            table.add_row(str(i), f"{dens:.2%}", f"{peak:.3f}")
        console.print(table)
        return
    from assocmem.views.sae import visible, write_feature_html

    view = feature_view(run, sae, meta["hook"], feature, codes, ids, top=top)
    console.print(
        f"feature {feature} of {sae_dir}: fires on {view.density:.2%} of held-out tokens, "
        f"max {view.max_act:.3f}"
    )
    table = Table(title="top activating contexts (peak token in brackets)")
    table.add_column("act.", justify="right")
    table.add_column("context")
    for c in view.contexts:
        text = [visible(t) for t in c.tokens]
        text[c.at] = f"[{text[c.at]}]"
        table.add_row(f"{c.peak:.3f}", "".join(text))
    console.print(table, markup=False, highlight=False)
    near = Table(title="nearest tokens (cosine with the decoder direction)")
    near.add_column("token")
    near.add_column("cos", justify="right")
    for t, c in view.nearest:
        near.add_row(visible(t), f"{c:+.3f}")
    console.print(near)
    if html is not None:
        write_feature_html(view, f"{sae_dir} on {meta['checkpoint']}", html)
        console.print(f"page written to {html}")
