"""`qa-service reader train | export | eval`: make the reader from a clean clone, and score it alone."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

reader_app = typer.Typer(no_args_is_help=True, help="Train, export and score the extractive reader.")
DEFAULT_DATA = Path("../shared/eval/reader-train")
DEFAULT_WORK = Path("models/reader-work")  # checkpoints and the transformers folder; not committed
DEFAULT_OUT = Path("models/reader")  # the exported model the service loads


@reader_app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option(help="folder of the SQuAD-style .jsonl.gz training files")] = DEFAULT_DATA,
    work: Annotated[Path, typer.Option(help="checkpoints and the trained transformers folder")] = DEFAULT_WORK,
    limit: Annotated[int, typer.Option(help="QA pairs to train on, a seeded sample (0: all)")] = 0,
    epochs: Annotated[float, typer.Option()] = 1.0,
    max_length: Annotated[int, typer.Option(help="tokens per training window")] = 192,
    batch_size: Annotated[int, typer.Option()] = 32,
    lr: Annotated[float, typer.Option()] = 1e-4,
    seed: Annotated[int, typer.Option()] = 13,
    max_steps: Annotated[int, typer.Option(help="stop after this many optimizer steps, the learning rate reaching zero there (0: one epoch)")] = 0,
    hard_negatives: Annotated[float, typer.Option(help="share of pairs that also give a window of their context without the answer")] = 0.25,
    easy_negatives: Annotated[float, typer.Option(help="share of pairs that also give a random other context")] = 0.25,
    related_negatives: Annotated[float, typer.Option(help="share of pairs that also give the most similar other context without the answer")] = 0.0,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in --work")] = False,
) -> None:
    """Fine-tune the packaged MiniLM for extractive QA (checkpoints every 200 steps; --resume continues)."""
    from qa_service.reader.train import TrainConfig, train

    cfg = TrainConfig(data=data, out=work, limit=limit, epochs=epochs, max_length=max_length, batch_size=batch_size, lr=lr, seed=seed, max_steps=max_steps,
        hard_negatives=hard_negatives, easy_negatives=easy_negatives, related_negatives=related_negatives,
    )
    folder = train(cfg, resume=resume)
    typer.echo(f"trained: {folder}")


@reader_app.command("export")
def export_cmd(
    work: Annotated[Path, typer.Option(help="the train command's --work folder")] = DEFAULT_WORK,
    out: Annotated[Path, typer.Option(help="where the int8 ONNX model, its tokenizer and model card go")] = DEFAULT_OUT,
    data: Annotated[Path, typer.Option(help="the training data folder: held-out pairs and TweetQA dev")] = DEFAULT_DATA,
    limit: Annotated[int, typer.Option(help="questions per metric set")] = 500,
) -> None:
    """Export to int8 ONNX, fit the confidence calibration on held-out pairs, score it, and write the model card."""
    from qa_service.reader.evaluate import calibrate, evaluate, held_out, rows_of, unseen_rows
    from qa_service.reader.export import CALIBRATION, export, write_card
    from qa_service.reader.onnx_reader import OnnxReader
    from qa_service.reader.train import TrainConfig

    stats = json.loads((work / "train.json").read_text())
    cfg = stats["config"]
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    export(work / "model", out)
    unseen = held_out(data, int(cfg["limit"]), 2 * limit, int(cfg["seed"])) if int(cfg["limit"]) else unseen_rows(cfg, 2 * limit)
    reader = OnnxReader(out)
    if unseen:
        (out / CALIBRATION).write_text(json.dumps(calibrate(reader, unseen[limit:]), indent=2))
        reader = OnnxReader(out)
    metrics = {"tweetqa-dev": evaluate(reader, rows_of(data / "tweetqa-dev.jsonl.gz"), name="tweetqa-dev", limit=limit)}
    if unseen:
        metrics["held-out"] = evaluate(reader, unseen[:limit], name="training pool pairs no training step read")
    command = "qa-service reader train " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in cfg.items() if k in {"limit", "epochs", "max_length", "batch_size", "lr", "seed", "max_steps"} and v
    ) + "".join(
        f" --{k.replace('_', '-')} {cfg[k]}" for k in ("hard_negatives", "easy_negatives", "related_negatives") if k in cfg and cfg[k] != defaults[k]
    ) + f" && qa-service reader export  # {shlex.join(sys.argv[1:])}"
    card = write_card(out, stats, metrics, command)
    typer.echo(json.dumps(metrics, indent=2))
    typer.echo(f"wrote {card}", err=True)


@reader_app.command("eval")
def eval_cmd(
    file: Annotated[Path, typer.Argument(help="a SQuAD-style .jsonl(.gz) file, e.g. tweetqa-dev.jsonl.gz")],
    model: Annotated[Path, typer.Option(help="the exported reader folder")] = DEFAULT_OUT,
    limit: Annotated[int, typer.Option(help="questions (0: all)")] = 0,
) -> None:
    """The reader alone: span EM/F1, and how often it abstains on another context."""
    from qa_service.reader.evaluate import evaluate, rows_of
    from qa_service.reader.onnx_reader import OnnxReader

    typer.echo(json.dumps(evaluate(OnnxReader(model), rows_of(file), name=file.name, limit=limit), indent=2))
