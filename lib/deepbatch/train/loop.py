"""The training function every launcher runs, on each worker process.

``train_fn(params)`` takes plain values only (made on the driver by
:func:`deepbatch.train.launch.training_params`), so it pickles to executors.
Each rank reads its own Petastorm shard; every rank runs the same number of
steps per epoch (the smallest shard decides), so no collective waits forever.
Rank 0 evaluates, checkpoints every epoch and writes the model folder.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger("deepbatch.train")
EPOCH_LINE_S = 5.0  # at most one epoch progress line per this many seconds (first and last epochs always)


def make_optimizer(name: str, params: list[nn.Parameter], lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD, momentum (SGD + Nesterov), RMSProp or Adam; weight_decay is the L2 penalty."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: expected sgd, momentum, rmsprop or adam")


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(epochs // 3, 1), gamma=0.3)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"unknown lr_schedule {name!r}: expected cosine, step or constant")


def _split_logits(model: nn.Module, url: str, modality: str, batch_size: int, device: torch.device,
                  cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, labels) per batch over a whole split; from cached frozen features when given a cache."""
    from deepbatch.train.cached import encode_split
    from deepbatch.train.data import make_loader, to_inputs

    if cache is not None:
        if url not in cache:
            cache[url] = encode_split(model, make_loader(url, modality, batch_size), modality, device)
        feats, labels = cache[url]
        for i in range(0, len(labels), batch_size):
            yield model(features=feats[i : i + batch_size]), labels[i : i + batch_size]
        return
    loader = make_loader(url, modality, batch_size)
    try:
        for batch in loader:
            x, y = to_inputs(modality, batch, device)
            yield model(*x), y
    finally:
        loader.reader.stop()
        loader.reader.join()


def evaluate(model: nn.Module, url: str, modality: str, batch_size: int, device: torch.device,
             cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean loss, labels and predictions over a whole split (one process, no sharding).

    With ``cache`` (frozen encoders) the split's features are computed on first use and reused.
    """
    model.eval()
    losses, ys, preds = [], [], []
    with torch.no_grad():
        for logits, y in _split_logits(model, url, modality, batch_size, device, cache):
            losses.append(float(nn.functional.cross_entropy(logits, y, reduction="sum")))
            ys.append(y.cpu().numpy())
            preds.append(logits.argmax(1).cpu().numpy())
    if not ys:
        return float("nan"), np.zeros(0, int), np.zeros(0, int)
    y_all, p_all = np.concatenate(ys), np.concatenate(preds)
    return sum(losses) / len(y_all), y_all, p_all


def weights_checksum(model: nn.Module) -> float:
    """Order-sensitive sum of all parameters: equal across ranks iff they hold the same weights."""
    total = 0.0
    for i, p in enumerate(model.state_dict().values()):
        if p.is_floating_point():
            total += float(p.double().sum()) * (1 + (i % 7) / 10)
    return total


@dataclass
class Feed:
    """Where a rank's training batches come from: cached frozen features, or an endless Petastorm reader."""

    steps: int
    n_rows: int
    feats: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    loader: Any = None
    batches: Any = None

    def stop(self) -> None:
        if self.loader is not None:
            self.loader.reader.stop()
            self.loader.reader.join()


def _set_threads() -> None:
    if not torch.cuda.is_available():
        # Ranks on one host share its cores; oversubscribed threads slow every rank down.
        local_size = int(os.environ.get("HOROVOD_LOCAL_SIZE") or os.environ.get("LOCAL_WORLD_SIZE") or 1)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_size))


def checkpoint_meta(params: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must share with a run that resumes it."""
    return {"task": params["task"], "dataset_version": params["dataset_version"], "classes": params["classes"],
            "model_settings": params["model_settings"]}


def restore(params: dict[str, Any], model: nn.Module, optimizer: Any, scheduler: Any, dist: Any) -> dict[str, Any]:
    """Every rank loads the last checkpoint (when resuming), so optimiser state and weights agree
    everywhere before the launcher's broadcasts; then rank 0's progress state is shared."""
    from deepbatch.train.outputs import load_checkpoint

    state: dict[str, Any] = {"epoch": 0, "history": [], "best_val_acc": -1.0, "stale": 0}
    ckpt = Path(params["checkpoint_dir"]) / "last.pt"
    if params["resume"] and ckpt.is_file():
        saved = load_checkpoint(ckpt)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        state = saved["state"]
        if dist.rank == 0:
            log.info("resuming %s from epoch %d (%s)", params["task"], state["epoch"], ckpt)
    return dict(dist.broadcast_object(state))


def make_feed(params: dict[str, Any], model: nn.Module, dist: Any, device: torch.device, first_epoch: int) -> Feed:
    """Cached frozen features for the rank's shard, or an endless shuffled reader; equal steps on every rank."""
    from deepbatch.train.cached import encode_split, supports_feature_cache
    from deepbatch.train.data import count_shard_rows, make_loader

    task, modality, bs, url = params["task"], params["modality"], params["hparams"]["batch_size"], params["train_url"]
    feed = Feed(steps=0, n_rows=0)
    if supports_feature_cache(model):
        shard = make_loader(url, modality, bs, cur_shard=dist.rank, shard_count=dist.size, num_epochs=1)
        t_enc = time.monotonic()
        feed.feats, feed.labels = encode_split(model, shard, modality, device)
        log.info("%s rank %d: frozen-encoder features for %d rows in %.1f s", task, dist.rank, len(feed.labels), time.monotonic() - t_enc)
        feed.n_rows = len(feed.labels)
    else:
        feed.n_rows = count_shard_rows(url, dist.rank, dist.size)
    feed.steps = dist.allreduce_min(feed.n_rows // bs)
    if feed.steps == 0:
        raise RuntimeError(f"a rank's shard of {url} holds fewer than batch_size={bs} rows; lower batch_size or add data")
    if feed.feats is None:
        feed.loader = make_loader(url, modality, bs, cur_shard=dist.rank, shard_count=dist.size, num_epochs=None,
                                  shuffle=True, seed=params["seed"] + 1000 * dist.rank + first_epoch)
        feed.batches = iter(feed.loader)
    return feed


def train_epoch(params: dict[str, Any], model: nn.Module, optimizer: Any, feed: Feed, epoch: int, dist: Any,
                device: torch.device, weight: torch.Tensor | None) -> tuple[float, int, int]:
    """One epoch of feed.steps steps; returns (summed loss, correct, seen) on this rank."""
    from deepbatch.train.cached import epoch_order
    from deepbatch.train.data import to_inputs

    hp, bs = params["hparams"], params["hparams"]["batch_size"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    order = epoch_order(feed.n_rows, params["seed"] + 1000 * dist.rank + epoch) if feed.feats is not None else None
    for step in range(feed.steps):
        optimizer.zero_grad()
        if order is not None:
            idx = order[step * bs : (step + 1) * bs]
            y, logits = feed.labels[idx], model(features=feed.feats[idx])  # type: ignore[index]
        else:
            x, y = to_inputs(params["modality"], next(feed.batches), device)
            logits = model(*x)
        loss = nn.functional.cross_entropy(logits, y, weight=weight)
        if hp["l1"] > 0:
            loss = loss + hp["l1"] * sum(p.abs().sum() for p in trainable)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(y)
    return loss_sum, correct, seen


def end_epoch_on_rank0(params: dict[str, Any], model: nn.Module, optimizer: Any, scheduler: Any, state: dict[str, Any],
                       record: dict[str, Any], device: torch.device, cache: Any) -> dict[str, Any]:
    """Validate, keep the best weights, and checkpoint (both files written atomically)."""
    from deepbatch.train.outputs import save_checkpoint

    ckpt_dir = Path(params["checkpoint_dir"])
    val_loss, vy, vp = evaluate(model, params["val_url"], params["modality"], params["hparams"]["batch_size"], device, cache)
    val_acc = float((vy == vp).mean()) if len(vy) else float("nan")
    record.update({"val_loss": round(val_loss, 5), "val_acc": round(val_acc, 5)})
    state["history"].append(record)
    if val_acc > state["best_val_acc"] or (np.isnan(val_acc) and record["epoch"] == params["hparams"]["epochs"]):
        state["best_val_acc"], state["stale"] = val_acc, 0
        save_checkpoint(ckpt_dir / "best.pt", model.state_dict())
    else:
        state["stale"] += 1
    state["epoch"] = record["epoch"]
    save_checkpoint(ckpt_dir / "last.pt", {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "state": state},
                    meta=checkpoint_meta(params))
    return state


def export_model(params: dict[str, Any], model: nn.Module, state: dict[str, Any], device: torch.device, world: int, cache: Any) -> float:
    """Rank 0: reload the best epoch, evaluate on test, write the model folder; returns test accuracy."""
    from deepbatch.modality import MODALITIES
    from deepbatch.train.outputs import classification_metrics, load_checkpoint, save_model_folder

    task, classes, hp = params["task"], params["classes"], params["hparams"]
    out_dir = Path(params["export_dir"])
    model.load_state_dict(load_checkpoint(Path(params["checkpoint_dir"]) / "best.pt"))
    test_loss, ty, tp = evaluate(model, params["test_url"], params["modality"], hp["batch_size"], device, cache)
    metrics = {"task": task, "history": state["history"], "best_val_acc": state["best_val_acc"], "test_loss": test_loss,
               "test": classification_metrics(ty, tp, classes), "world_size": world, "hparams": hp}
    save_model_folder(out_dir, model.state_dict(), {"task": task, "model_settings": params["model_settings"], "num_classes": len(classes)},
                      {c: i for i, c in enumerate(classes)}, params["preprocessing"], metrics)
    MODALITIES[params["modality"]].save_assets(out_dir, params, model)
    log.info("%s: test accuracy %.4f on %d rows; model written to %s", task, metrics["test"]["accuracy"], metrics["test"]["n"], out_dir)
    return float(metrics["test"]["accuracy"])


def run_epochs(params: dict[str, Any], model: nn.Module, optimizer: Any, scheduler: Any, state: dict[str, Any],
               feed: Feed, dist: Any, device: torch.device, cache: Any) -> dict[str, Any]:
    """The epoch loop from the restored epoch: train, average, rank 0 validates and checkpoints, early stop."""
    from deepbatch.train.dist import unwrap

    hp, task = params["hparams"], params["task"]
    weight = torch.tensor(params["class_weights"], dtype=torch.float32, device=device) if params["class_weights"] else None
    t_start, first_epoch = time.monotonic(), state["epoch"]
    last_line = 0.0
    for epoch in range(state["epoch"], hp["epochs"]):
        t0 = time.monotonic()
        loss_sum, correct, seen = train_epoch(params, model, optimizer, feed, epoch, dist, device, weight)
        scheduler.step()
        dist.sync_buffers(model)
        record = {"epoch": epoch + 1, "train_loss": round(dist.allreduce_mean(loss_sum / seen), 5),
                  "train_acc": round(dist.allreduce_mean(correct / seen), 5),
                  "samples_per_s": round(dist.allreduce_mean(seen / (time.monotonic() - t0)) * dist.size, 1)}
        if dist.rank == 0:
            state = end_epoch_on_rank0(params, unwrap(model), optimizer, scheduler, state, record, device, cache)
            eta = (time.monotonic() - t_start) / (epoch + 1 - first_epoch) * (hp["epochs"] - epoch - 1)
            # A progress line every EPOCH_LINE_S seconds, and for the first and last epoch; -v shows every epoch.
            due = epoch in (first_epoch, hp["epochs"] - 1) or time.monotonic() - last_line >= EPOCH_LINE_S
            last_line = time.monotonic() if due else last_line
            log.log(logging.INFO if due else logging.DEBUG,
                    "%s epoch %d/%d loss %.4f acc %.4f | val loss %.4f acc %.4f | %.0f samples/s | ETA %.0f s", task, epoch + 1,
                    hp["epochs"], record["train_loss"], record["train_acc"], record["val_loss"], record["val_acc"],
                    record["samples_per_s"], eta)
        state = dist.broadcast_object(state)
        if params.get("stop_after_epochs") and state["epoch"] >= params["stop_after_epochs"]:
            break  # used by tests to simulate a killed run
        if state["stale"] > hp["patience"]:
            if dist.rank == 0:
                log.info("%s: early stop, no val improvement for %d epochs", task, state["stale"])
            break
    return state


def train_fn(params: dict[str, Any]) -> dict[str, Any]:
    """Train one task on this worker's shard; returns metrics and a weights checksum."""
    from deepbatch.modality import MODALITIES
    from deepbatch.train.cached import supports_feature_cache
    from deepbatch.train.dist import make_dist, unwrap

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-5s %(name)s: %(message)s", datefmt="%H:%M:%S")
    dist = make_dist(params["backend"])
    _set_threads()
    hp = params["hparams"]
    device = torch.device(f"cuda:{dist.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    torch.manual_seed(params["seed"])
    model = MODALITIES[params["modality"]].build(len(params["classes"]), params["model_settings"]).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # Horovod convention: scale the learning rate by the number of workers.
    optimizer = make_optimizer(hp["optimizer"], trainable, hp["lr"] * dist.size, hp["momentum"], hp["weight_decay"])
    scheduler = make_scheduler(hp["lr_schedule"], optimizer, hp["epochs"])
    state = restore(params, model, optimizer, scheduler, dist)
    model, optimizer = dist.prepare(model, optimizer)
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = {} if supports_feature_cache(unwrap(model)) else None
    feed = make_feed(params, unwrap(model), dist, device, state["epoch"])
    try:
        state = run_epochs(params, model, optimizer, scheduler, state, feed, dist, device, cache)
    finally:
        feed.stop()
    # Every rank's weights after its last step (before rank 0 swaps in the best epoch's).
    checksum = weights_checksum(unwrap(model))
    summary: dict[str, Any] = {"epochs_done": state["epoch"], "history": state["history"]}
    finished = state["epoch"] >= hp["epochs"] or state["stale"] > hp["patience"]
    if dist.rank == 0 and finished:
        summary["test_accuracy"] = export_model(params, unwrap(model), state, device, dist.size, cache)
    # Every rank returns rank 0's summary: TorchDistributor hands back an arbitrary rank's value.
    summary = dist.broadcast_object(summary)
    if params.get("rank_report_dir"):
        Path(params["rank_report_dir"], f"rank{dist.rank}.json").write_text(json.dumps({"rank": dist.rank, "weights_checksum": checksum}))
    dist.shutdown()
    return {**summary, "rank": dist.rank, "size": dist.size, "weights_checksum": checksum}
