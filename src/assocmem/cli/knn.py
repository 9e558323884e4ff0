"""``assocmem knn build`` and ``assocmem knn eval``: the training set as a memory (kNN-LM)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from assocmem.cli.app import app, console
from assocmem.errors import InputError

knn_app = typer.Typer(
    help="kNN-LM: a datastore of a trained model's hidden states (docs/large_memory.md)."
)
app.add_typer(knn_app, name="knn")


@knn_app.command("build")
def build(
    ckpt: Path = typer.Argument(..., help="Checkpoint folder (out_dir) of a trained MemLM or GPT."),
    out: Path = typer.Argument(..., help="Folder to write the datastore into."),
    index: str = typer.Option("ivf", help="'exact', 'ivf' or 'hnsw' (faiss, inner product)."),
    nlist: int = typer.Option(1024, help="IVF lists."),
    nprobe: int = typer.Option(32, help="IVF lists searched per query (changeable at eval)."),
    ef_search: int = typer.Option(128, help="HNSW beam width of a search."),
    threads: int = typer.Option(1, help="torch and faiss threads."),
) -> None:
    """Store (hidden state before the readout -> next token) for every position of the training split."""
    import torch

    from assocmem.index import IndexConfig
    from assocmem.lm.knn import build_datastore, checkpoint_splits
    from assocmem.lm.train import load_model

    if threads < 1:
        raise InputError(f"--threads must be >= 1; got {threads}.")
    config = IndexConfig(kind=index, nlist=nlist, nprobe=nprobe, ef_search=ef_search)
    if out.exists() and not out.is_dir():
        raise InputError(f"{str(out)!r} is a file; give a folder for the datastore.")
    _threads(threads)
    model, _, meta = load_model(ckpt)
    train_ids, _ = checkpoint_splits(meta)
    with torch.no_grad():
        store = build_datastore(model, train_ids, config, meta={"checkpoint": str(ckpt)})
    store.save(out)
    console.print(
        f"wrote {out}: {store.index.size:,} slots of dimension {store.K.shape[1]} ({index})",
        markup=False,
    )


@knn_app.command("eval")
def evaluate(
    ckpt: Path = typer.Argument(..., help="Checkpoint folder the datastore was built from."),
    datastore: Path = typer.Argument(..., help="Folder written by `assocmem knn build`."),
    k: int = typer.Option(32, help="Slots read per position."),
    temp: float = typer.Option(1.0, help="Temperature of the kNN read."),
    lam: float = typer.Option(0.25, help="λ: weight of the kNN distribution."),
    nprobe: int = typer.Option(0, help="IVF lists searched (0: as built)."),
    ef_search: int = typer.Option(0, help="HNSW beam width (0: as built)."),
    threads: int = typer.Option(1, help="torch and faiss threads."),
) -> None:
    """Validation loss without and with the datastore (λ·p_kNN + (1-λ)·p_LM)."""
    import torch

    from assocmem.index import LargeMemory
    from assocmem.lm.knn import KNNConfig, checkpoint_splits, evaluate_knn
    from assocmem.lm.train import load_model

    if threads < 1 or nprobe < 0 or ef_search < 0:
        raise InputError("--threads must be >= 1, --nprobe and --ef-search >= 0.")
    config = KNNConfig(k=k, temp=temp, lam=lam)
    _threads(threads)
    model, _, meta = load_model(ckpt)
    store = LargeMemory.load(datastore)
    if store.K.shape[1] != model.config.n_embd:
        raise InputError(
            f"the datastore's keys have dimension {store.K.shape[1]}, the model's hidden states "
            f"{model.config.n_embd}: build the datastore from this checkpoint."
        )
    store.index.set_search(nprobe=nprobe or None, ef_search=ef_search or None)
    _, val_ids = checkpoint_splits(meta)
    with torch.no_grad():
        r = evaluate_knn(model, store, val_ids, config)
    table = Table(title=f"validation, {r.positions:,} positions (k={k}, temp={temp:g}, λ={lam:g})")
    for col in ("", "loss", "tokens/s"):
        table.add_column(col)
    table.add_row("model", f"{r.loss:.4f}", f"{r.tokens_per_s:,.0f}")
    table.add_row("model + kNN", f"{r.loss_knn:.4f}", f"{r.tokens_per_s_knn:,.0f}")
    console.print(table)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
