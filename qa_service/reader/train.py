"""Fine-tune the packaged MiniLM encoder for extractive QA: start/end logits over the window's tokens, [CLS] for
"no answer". A 2-core machine finishes the default run in hours; checkpoints let it stop and resume.

Run: qa-service reader train --out models/reader   (then: qa-service reader export --out models/reader)
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qa_service.reader.data import Pair, Window, featurize, load_pairs, with_negatives

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainConfig:
    data: Path
    out: Path
    base: str = "all-MiniLM-L6-v2"
    limit: int = 0  # QA pairs used (0: all), a seeded sample
    max_length: int = 192
    batch_size: int = 32
    epochs: float = 1.0
    lr: float = 1e-4
    warmup: float = 0.06
    hard_negatives: float = 0.25
    easy_negatives: float = 0.25
    related_negatives: float = 0.0
    seed: int = 13
    checkpoint_every: int = 200  # optimizer steps
    max_steps: int = 0  # stop after this many optimizer steps, the schedule decaying to zero there (0: the epochs decide)
    threads: int = 0

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def build_windows(cfg: TrainConfig, tokenizer: Any) -> list[Window]:
    return [w for w, _ in _windows_with_pairs(cfg, tokenizer)]


def _windows_with_pairs(cfg: TrainConfig, tokenizer: Any) -> list[tuple[Window, Pair]]:
    """Every training window with the pair it was made from, in training's seeded order."""
    pairs = load_pairs(cfg.data)
    rng = random.Random(cfg.seed)
    rng.shuffle(pairs)
    if cfg.limit:
        pairs = pairs[: cfg.limit]
    pairs = with_negatives(pairs, hard=cfg.hard_negatives, easy=cfg.easy_negatives, related=cfg.related_negatives, seed=cfg.seed)
    made = [(w, p) for p in pairs if (w := featurize(tokenizer, p, cfg.max_length)) is not None]
    rng.shuffle(made)
    return made


def batch_order(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Length-bucketed batches of window indices (similar lengths pad little), in a seeded order per epoch."""
    rng = random.Random(seed * 1000 + epoch)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    out = [order[j : j + batch_size] for j in range(0, len(order), batch_size)]
    rng.shuffle(out)
    return out


def batches(windows: list[Window], batch_size: int, seed: int, epoch: int) -> list[list[Window]]:
    return [[windows[i] for i in b] for b in batch_order([len(w.input_ids) for w in windows], batch_size, seed, epoch)]


def unseen_pairs(cfg: TrainConfig) -> list[Pair]:
    """Answerable pairs of the training files whose question no training step read: the run's own held-out set when
    it trained on every pair (`--limit 0`) but stopped before the epoch ended (`--max-steps`)."""
    from transformers import AutoTokenizer

    from qa_service.models import resolve_embedder

    made = _windows_with_pairs(cfg, AutoTokenizer.from_pretrained(resolve_embedder(cfg.base)))
    lengths = [len(w.input_ids) for w, _ in made]
    per_epoch = math.ceil(len(made) / cfg.batch_size)
    steps = cfg.max_steps or int(per_epoch * cfg.epochs)
    seen: set[str] = set()
    for step in range(steps):
        epoch, offset = divmod(step, per_epoch)
        if offset == 0:
            order = batch_order(lengths, cfg.batch_size, cfg.seed, epoch)
        seen.update(made[i][1].question for i in order[offset])
    pool = [p for _, p in made if p.answer_start is not None and p.question not in seen]
    return list({(p.question, p.context): p for p in pool}.values())


def collate(batch: list[Window]) -> dict[str, Any]:
    import torch

    width = max(len(w.input_ids) for w in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for r, w in enumerate(batch):
        n = len(w.input_ids)
        ids[r, :n] = torch.tensor(w.input_ids)
        types[r, :n] = torch.tensor(w.token_type_ids)
        mask[r, :n] = 1
    return {
        "input_ids": ids, "attention_mask": mask, "token_type_ids": types,
        "start_positions": torch.tensor([w.start for w in batch]), "end_positions": torch.tensor([w.end for w in batch]),
    }


def _save(path: Path, state: dict[str, Any]) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


class _Run:
    """The model, optimizer and schedule of one training run, and where it stands."""

    def __init__(self, cfg: TrainConfig, total: int) -> None:
        import torch
        from transformers import AutoModelForQuestionAnswering, get_linear_schedule_with_warmup

        from qa_service.models import resolve_embedder

        self.model = AutoModelForQuestionAnswering.from_pretrained(resolve_embedder(cfg.base))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.01)
        self.schedule = get_linear_schedule_with_warmup(self.optimizer, int(cfg.warmup * total), total)  # type: ignore[no-untyped-call]
        self.step = 0
        self.losses: list[float] = []

    def save(self, path: Path) -> None:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict()}
        _save(path, {**state, "step": self.step, "losses": self.losses})

    def load(self, path: Path) -> None:
        """Model, optimizer and the step reached; the schedule's step too, while its shape (the total) stays this
        run's, so a resumed run with a smaller --max-steps decays to zero at its new end."""
        import torch

        state = torch.load(path, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.step, self.losses = state["step"], state["losses"]

    def update(self, batch: list[Window]) -> None:
        import torch

        loss = self.model(**collate(batch)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad()
        self.step += 1
        self.losses.append(round(float(loss), 4))

    def recent_loss(self) -> float:
        tail = self.losses[-50:]
        return round(sum(tail) / max(1, len(tail)), 4)


def train(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Train and write <out>/model (a transformers folder) and <out>/train.json; returns the folder."""
    import torch
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from qa_service.config import offline_environment, usable_cores
    from qa_service.models import resolve_embedder

    offline_environment()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or usable_cores())
    cfg.out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(resolve_embedder(cfg.base))
    windows = build_windows(cfg, tokenizer)
    per_epoch = math.ceil(len(windows) / cfg.batch_size)
    total = max(1, int(per_epoch * cfg.epochs))
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    run = _Run(cfg, total)
    ckpt = cfg.out / CHECKPOINT
    if resume and ckpt.exists():
        run.load(ckpt)
    run.model.train()
    started = time.monotonic()
    with tqdm(total=total, initial=run.step, unit="step", desc="reader") as bar:
        while run.step < total:
            epoch, offset = divmod(run.step, per_epoch)
            for batch in batches(windows, cfg.batch_size, cfg.seed, epoch)[offset:]:
                run.update(batch)
                bar.update(1)
                bar.set_postfix(loss=f"{run.recent_loss():.3f}")
                if run.step % cfg.checkpoint_every == 0 or run.step == total:
                    run.save(ckpt)
                if run.step >= total:
                    break
    folder = cfg.out / "model"
    run.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    stats = {"config": cfg.to_json(), "windows": len(windows), "steps": total, "seconds_last_run": round(time.monotonic() - started), "final_loss_50": run.recent_loss()}
    (cfg.out / "train.json").write_text(json.dumps(stats, indent=2))
    return folder
