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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger("deepbatch.train")


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


def _split_logits(model: nn.Module, url: str, task: str, batch_size: int, device: torch.device,
                  cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(logits, labels) per batch over a whole split; from cached frozen features when given a cache."""
    from deepbatch.train.cached import encode_split
    from deepbatch.train.data import make_loader, to_inputs

    if cache is not None:
        if url not in cache:
            cache[url] = encode_split(model, make_loader(url, task, batch_size), task, device)
        feats, labels = cache[url]
        for i in range(0, len(labels), batch_size):
            yield model(features=feats[i : i + batch_size]), labels[i : i + batch_size]
        return
    loader = make_loader(url, task, batch_size)
    try:
        for batch in loader:
            x, y = to_inputs(task, batch, device)
            yield model(*x), y
    finally:
        loader.reader.stop()
        loader.reader.join()


def evaluate(model: nn.Module, url: str, task: str, batch_size: int, device: torch.device,
             cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean loss, labels and predictions over a whole split (one process, no sharding).

    With ``cache`` (frozen encoders) the split's features are computed on first use and reused.
    """
    model.eval()
    losses, ys, preds = [], [], []
    with torch.no_grad():
        for logits, y in _split_logits(model, url, task, batch_size, device, cache):
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


def train_fn(params: dict[str, Any]) -> dict[str, Any]:
    """Train one task on this worker's shard; returns metrics and a weights checksum."""
    from deepbatch.models.builders import build_model
    from deepbatch.train.cached import encode_split, epoch_order, supports_feature_cache
    from deepbatch.train.data import count_shard_rows, make_loader, to_inputs
    from deepbatch.train.dist import make_dist, unwrap
    from deepbatch.train.outputs import classification_metrics, load_checkpoint, save_checkpoint, save_model_folder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-5s %(name)s: %(message)s", datefmt="%H:%M:%S")
    dist = make_dist(params["backend"])
    if not torch.cuda.is_available():
        # Ranks on one host share its cores; oversubscribed threads slow every rank down.
        local_size = int(os.environ.get("HOROVOD_LOCAL_SIZE") or os.environ.get("LOCAL_WORLD_SIZE") or 1)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_size))
    task, hp, classes = params["task"], params["hparams"], params["classes"]
    out_dir, ckpt = Path(params["model_dir"]), Path(params["model_dir"]) / "checkpoints" / "last.pt"
    device = torch.device(f"cuda:{dist.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    torch.manual_seed(params["seed"])
    model = build_model(task, len(classes), params["model_settings"]).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # Horovod convention: scale the learning rate by the number of workers.
    optimizer = make_optimizer(hp["optimizer"], trainable, hp["lr"] * dist.size, hp["momentum"], hp["weight_decay"])
    scheduler = make_scheduler(hp["lr_schedule"], optimizer, hp["epochs"])
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_val_acc": -1.0, "stale": 0}
    if params["resume"] and dist.rank == 0 and ckpt.is_file():
        saved = load_checkpoint(ckpt)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["rng"])
        state = saved["state"]
        log.info("resuming %s from epoch %d (%s)", task, state["epoch"], ckpt)
    state = dist.broadcast_object(state)
    if params["resume"]:
        scheduler.load_state_dict(dist.broadcast_object(scheduler.state_dict()))
    model, optimizer = dist.prepare(model, optimizer)
    weight = torch.tensor(params["class_weights"], dtype=torch.float32, device=device) if params["class_weights"] else None

    bs = hp["batch_size"]
    use_cache = supports_feature_cache(unwrap(model))
    eval_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = {} if use_cache else None
    if use_cache:
        shard = make_loader(params["train_url"], task, bs, cur_shard=dist.rank, shard_count=dist.size, num_epochs=1)
        t_enc = time.monotonic()
        feats, labels = encode_split(unwrap(model), shard, task, device)
        log.info("%s rank %d: frozen-encoder features for %d rows in %.1f s", task, dist.rank, len(labels), time.monotonic() - t_enc)
        n_rows = len(labels)
    else:
        n_rows = count_shard_rows(params["train_url"], dist.rank, dist.size)
    steps = dist.allreduce_min(n_rows // bs)
    if steps == 0:
        raise RuntimeError(f"a rank's shard of {params['train_url']} holds fewer than batch_size={bs} rows; lower batch_size or add data")
    loader = None if use_cache else make_loader(params["train_url"], task, bs, cur_shard=dist.rank, shard_count=dist.size,
                                                num_epochs=None, shuffle=True, seed=params["seed"] + 1000 * dist.rank + state["epoch"])  # fmt: skip
    batches = iter(loader) if loader is not None else None
    t_start, first_epoch = time.monotonic(), state["epoch"]
    try:
        for epoch in range(state["epoch"], hp["epochs"]):
            model.train()
            t0, loss_sum, correct, seen = time.monotonic(), 0.0, 0, 0
            order = epoch_order(n_rows, params["seed"] + 1000 * dist.rank + epoch) if use_cache else None
            for step in range(steps):
                optimizer.zero_grad()
                if order is not None:
                    idx = order[step * bs : (step + 1) * bs]
                    y = labels[idx]
                    logits = model(features=feats[idx])
                else:
                    x, y = to_inputs(task, next(batches), device)  # type: ignore[arg-type]
                    logits = model(*x)
                loss = nn.functional.cross_entropy(logits, y, weight=weight)
                if hp["l1"] > 0:
                    loss = loss + hp["l1"] * sum(p.abs().sum() for p in trainable)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
            scheduler.step()
            dist.sync_buffers(model)
            train_loss = dist.allreduce_mean(loss_sum / seen)
            train_acc = dist.allreduce_mean(correct / seen)
            rate = dist.allreduce_mean(seen / (time.monotonic() - t0)) * dist.size
            record = None
            if dist.rank == 0:
                val_loss, vy, vp = evaluate(unwrap(model), params["val_url"], task, bs, device, eval_cache)
                val_acc = float((vy == vp).mean()) if len(vy) else float("nan")
                record = {"epoch": epoch + 1, "train_loss": round(train_loss, 5), "train_acc": round(train_acc, 5),
                          "val_loss": round(val_loss, 5), "val_acc": round(val_acc, 5), "samples_per_s": round(rate, 1)}  # fmt: skip
                state["history"].append(record)
                improved = val_acc > state["best_val_acc"] or (np.isnan(val_acc) and epoch + 1 == hp["epochs"])
                if improved:
                    state["best_val_acc"], state["stale"] = val_acc, 0
                    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
                    torch.save(unwrap(model).state_dict(), out_dir / "checkpoints" / "best.pt")
                else:
                    state["stale"] += 1
                state["epoch"] = epoch + 1
                save_checkpoint(ckpt, {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                                       "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "state": state})  # fmt: skip
                eta = (time.monotonic() - t_start) / (epoch + 1 - first_epoch) * (hp["epochs"] - epoch - 1)
                log.info("%s epoch %d/%d loss %.4f acc %.4f | val loss %.4f acc %.4f | %.0f samples/s | ETA %.0f s",
                         task, epoch + 1, hp["epochs"], train_loss, train_acc, val_loss, val_acc, rate, eta)  # fmt: skip
            state = dist.broadcast_object(state)
            if params.get("stop_after_epochs") and state["epoch"] >= params["stop_after_epochs"]:
                break  # used by tests to simulate a killed run
            if state["stale"] > hp["patience"]:
                if dist.rank == 0:
                    log.info("%s: early stop, no val improvement for %d epochs", task, state["stale"])
                break
    finally:
        if loader is not None:
            loader.reader.stop()
            loader.reader.join()

    # Every rank's weights after its last step (before rank 0 swaps in the best epoch's).
    checksum = weights_checksum(unwrap(model))
    summary: dict[str, Any] = {"epochs_done": state["epoch"], "history": state["history"]}
    finished = state["epoch"] >= hp["epochs"] or state["stale"] > hp["patience"]
    if dist.rank == 0 and finished:
        final = unwrap(model)
        final.load_state_dict(torch.load(out_dir / "checkpoints" / "best.pt", map_location=device, weights_only=True))
        test_loss, ty, tp = evaluate(final, params["test_url"], task, bs, device, eval_cache)
        metrics = {"task": task, "history": state["history"], "best_val_acc": state["best_val_acc"], "test_loss": test_loss,
                   "test": classification_metrics(ty, tp, classes), "world_size": dist.size, "hparams": hp}  # fmt: skip
        save_model_folder(out_dir, final.state_dict(), {"task": task, "model_settings": params["model_settings"], "num_classes": len(classes)},
                          {c: i for i, c in enumerate(classes)}, params["preprocessing"], metrics)  # fmt: skip
        if task == "text_cls":
            from deepbatch.infer.text import save_text_assets

            save_text_assets(out_dir, params["preprocessing"]["tokenizer"], final.encoder)
        summary["test_accuracy"] = metrics["test"]["accuracy"]
        log.info("%s: test accuracy %.4f on %d rows; model written to %s", task, metrics["test"]["accuracy"], metrics["test"]["n"], out_dir)
    # Every rank returns rank 0's summary: TorchDistributor hands back an arbitrary rank's value.
    summary = dist.broadcast_object(summary)
    if params.get("rank_report_dir"):
        Path(params["rank_report_dir"], f"rank{dist.rank}.json").write_text(json.dumps({"rank": dist.rank, "weights_checksum": checksum}))
    dist.shutdown()
    return {**summary, "rank": dist.rank, "size": dist.size, "weights_checksum": checksum}
