"""Gradient fine-tuning for the ``transformers`` trainer: the linear probe, then AdamW on the head
and the encoder layers ``mode`` unfreezes (every layer in ``full``, the top ``train_layers`` in
``head``).

Two things keep it affordable on a CPU:

* **Length-grouped batches** (like Hugging Face's ``group_by_length``): each epoch the rows are
  shuffled, every run of ``LENGTH_GROUP`` batches (a quarter of the batches when that is fewer)
  is sorted by token count and cut into batches, and the batches are shuffled. A random batch
  pads every text to its longest one: on the bundled reviews that was 1.9x the real tokens, and
  training ran at half the rows/s.
* **Frozen lower layers run once.** When only the top layers are tuned, the hidden states that
  enter the first tuned layer are computed once per training row (the same pass gives the
  probe its features) and each step runs only the tuned layers on them. The encoder's
  embeddings are swapped for a pass-through and its layer list for the tuned layers while
  training; before the first step the shortcut's pooled output must equal the whole encoder's,
  else (an architecture it does not fit) every step runs the whole encoder and a warning says so.
  The frozen layers then see no dropout: they are a fixed feature extractor.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from driftloop.backends import require_module
from driftloop.errors import ConfigError, TrainingError
from driftloop.trainers.transformers_model import (
    MAX_GRAD_NORM,
    WARMUP_FRACTION,
    PooledClassifierModule,
    TransformersParams,
    TransformersPredictor,
    length_sorted_batches,
)

try:
    import torch
    from torch import nn
except ImportError as exc:  # the optional extra is missing: say how to install it
    require_module(exc.name or "torch", "transformers")
    raise

logger = logging.getLogger("driftloop.trainers.transformers")

LENGTH_GROUP = 50
"""Batches whose rows are sorted by length together (HF's ``LengthGroupedSampler`` uses 50)."""

FINITE_CHECK_STEPS = 25
"""Optimizer steps between checks that the training loss is still finite."""
KEPT_STATES_MAX_BYTES = 4 * 2**30
"""Most host memory the frozen layers' kept output may take (float32, one vector per real token:
about 670 MiB for the bundled reviews' 6,828 training rows on MiniLM); above it, no shortcut."""
SHORTCUT_CHECK_ROWS = 4
"""Training rows on which the tuned-layers-only pass must reproduce the whole encoder's."""

Report = Callable[[str], Callable[[float], None]]


def length_grouped_batches(
    lengths: NDArray[np.intp], batch_size: int, rng: np.random.Generator
) -> list[NDArray[np.intp]]:
    """One epoch's batches: shuffled rows, sorted by length within runs of ``LENGTH_GROUP``
    batches (fewer when there are under four such runs, so that small datasets still mix their
    batches from one epoch to the next), cut into batches, the batches shuffled."""
    order = rng.permutation(len(lengths))
    n_batches = math.ceil(len(lengths) / batch_size)
    span = batch_size * max(1, min(LENGTH_GROUP, n_batches // 4))
    batches: list[NDArray[np.intp]] = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def layer_list(encoder: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The transformer blocks: the longest ``ModuleList`` named ``layer``/``layers``, with the
    module holding it and its attribute name."""
    candidates = [
        (name, module)
        for name, module in encoder.named_modules()
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in {"layer", "layers"}
    ]
    if not candidates:
        raise ConfigError(
            f"cannot find the transformer layers of {type(encoder).__name__} to unfreeze; "
            "use train_layers: 0 or mode: full"
        )
    name, blocks = max(candidates, key=lambda candidate: len(candidate[1]))
    parent_name, _, attribute = name.rpartition(".")
    assert isinstance(blocks, nn.ModuleList)
    return encoder.get_submodule(parent_name), attribute, blocks


class _PassThrough(nn.Module):
    """Stands in for the encoder's embeddings: returns the ``inputs_embeds`` it is given (by
    keyword, as BERT passes them, or as the one floating-point argument, as DistilBERT does)."""

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        given = kwargs.get("inputs_embeds")
        if isinstance(given, torch.Tensor):
            return given
        for arg in args:
            if isinstance(arg, torch.Tensor) and arg.is_floating_point():
                return arg
        raise TypeError("the encoder called its embeddings without inputs_embeds")


@contextmanager
def _tuned_layers_only(encoder: nn.Module, top: int) -> Iterator[None]:
    """While inside, ``encoder(inputs_embeds=states, attention_mask=mask)`` runs only its top
    ``top`` layers on ``states``, the hidden states that enter the first of them."""
    parent, attribute, blocks = layer_list(encoder)
    embeddings = getattr(encoder, "embeddings", None)
    if not isinstance(embeddings, nn.Module):
        raise TypeError(f"{type(encoder).__name__} has no embeddings module")
    setattr(parent, attribute, nn.ModuleList(list(blocks)[-top:]))
    encoder.embeddings = _PassThrough()
    try:
        yield
    finally:
        setattr(parent, attribute, blocks)
        encoder.embeddings = embeddings


class _FrozenStates:
    """Per training row, the hidden states entering the first tuned layer (its real tokens
    only), from one pass of the frozen layers."""

    def __init__(self, states: list[torch.Tensor]) -> None:
        self.states = states

    def lengths(self) -> NDArray[np.intp]:
        return np.array([len(state) for state in self.states], dtype=np.intp)

    def batch(self, rows: Sequence[int], device: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows' states padded to the longest, and their attention mask."""
        picked = [self.states[row] for row in rows]
        lengths = torch.tensor([len(state) for state in picked])
        padded = nn.utils.rnn.pad_sequence(picked, batch_first=True)
        mask = (torch.arange(padded.shape[1])[None, :] < lengths[:, None]).long()
        return padded.to(device), mask.to(device)

    def logits(self, predictor: TransformersPredictor, rows: NDArray[np.intp]) -> torch.Tensor:
        """One training batch through the tuned layers only (inside :func:`_tuned_layers_only`)."""
        model = predictor.model
        states, mask = self.batch(rows.tolist(), predictor.device)
        with _autocast(predictor):
            hidden = model.encoder(inputs_embeds=states, attention_mask=mask).last_hidden_state
            logits: torch.Tensor = model.classifier(model.dropout(model.pool(hidden, mask)))
        return logits


def _embed_and_keep_states(
    predictor: TransformersPredictor,
    texts: Sequence[str],
    first_tuned: int,
    progress: Callable[[float], None],
) -> tuple[NDArray[np.float64], _FrozenStates]:
    """One pass of the whole encoder: the pooled outputs (the probe's features) and the hidden
    states entering layer ``first_tuned``. Under ``no_grad``, not ``inference_mode``: the states
    feed layers that are trained."""
    model = predictor.model
    pooled = np.empty((len(texts), model.classifier.in_features), dtype=np.float64)
    states: list[torch.Tensor] = [torch.empty(0)] * len(texts)
    batches = length_sorted_batches(texts, predictor.batch_size)
    model.eval()
    with torch.no_grad():
        for done, rows in enumerate(batches, start=1):
            inputs = predictor.tokenize([texts[i] for i in rows])
            output = model.encoder(**inputs, output_hidden_states=True)
            mask = inputs["attention_mask"]
            pooled[rows] = model.pool(output.last_hidden_state, mask).float().cpu().numpy()
            entering = output.hidden_states[first_tuned]
            for position, row in enumerate(rows.tolist()):
                states[row] = entering[position][mask[position].bool()].cpu().clone()
            progress(done / len(batches))
    return pooled, _FrozenStates(states)


def _shortcut_matches(
    model: PooledClassifierModule,
    frozen: _FrozenStates,
    pooled: NDArray[np.float64],
    top: int,
    device: str,
) -> bool:
    """Whether running only the tuned layers on the kept states gives the pooled outputs the
    whole encoder gave (checked on a few rows, dropout off)."""
    rows = list(range(min(SHORTCUT_CHECK_ROWS, len(pooled))))
    model.eval()
    try:
        with torch.no_grad(), _tuned_layers_only(model.encoder, top):
            states, mask = frozen.batch(rows, device)
            hidden = model.encoder(inputs_embeds=states, attention_mask=mask).last_hidden_state
            shortcut = model.pool(hidden, mask).float().cpu().numpy()
    except torch.OutOfMemoryError:
        raise
    except (TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        logger.warning("cannot run the tuned layers alone (%s)", exc)
        return False
    return bool(np.allclose(shortcut, pooled[rows], rtol=1e-3, atol=1e-4))


def fit_probe(
    head: nn.Linear,
    features: NDArray[np.float64],
    y: NDArray[np.int64],
    params: TransformersParams,
    progress: Callable[[float], None],
) -> None:
    """Fit ``head`` as an L2-regularised multinomial logistic regression (full-batch L-BFGS)."""
    device = head.weight.device
    x = torch.as_tensor(features, dtype=torch.float32, device=device)
    target = torch.as_tensor(y, dtype=torch.long, device=device)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    optimizer = torch.optim.LBFGS(
        head.parameters(),
        lr=1.0,
        max_iter=params.head_iterations,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        progress(min(evaluations / params.head_iterations, 0.99))
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(head(x), target)
        loss = loss + 0.5 * params.head_l2 * head.weight.pow(2).sum()
        torch.autograd.backward(loss)
        return loss

    with torch.enable_grad():
        optimizer.step(closure)  # type: ignore[no-untyped-call]
    if not bool(torch.isfinite(head.weight).all()):
        raise TrainingError("fitting the classification head diverged (non-finite weights)")
    progress(1.0)


def fine_tune(
    predictor: TransformersPredictor,
    mode: Literal["head", "full"],
    texts: list[str],
    y: NDArray[np.int64],
    params: TransformersParams,
    report: Report,
) -> None:
    """Linear probe on frozen embeddings, then AdamW on the head and the unfrozen layers."""
    model = predictor.model
    if mode == "head":
        blocks = list(layer_list(model.encoder)[2])
        tuned = blocks[len(blocks) - min(params.train_layers, len(blocks)) :]
        features, frozen = _probe_features(predictor, texts, len(blocks) - len(tuned), report)
    else:
        tuned, frozen = [], None
        features = predictor.embed(texts, report("embed"))
    fit_probe(model.classifier, features, y, params, report("probe"))
    if mode == "head":
        model.encoder.requires_grad_(False)
        for block in tuned:
            block.requires_grad_(True)
    shortcut: AbstractContextManager[None] = (
        _tuned_layers_only(model.encoder, len(tuned)) if frozen is not None else nullcontext()
    )
    model.train()
    try:
        with shortcut:
            _train(predictor, texts, y, params, frozen, report("train"))
    finally:
        model.requires_grad_(True)
        model.eval()


def _probe_features(
    predictor: TransformersPredictor, texts: list[str], first_tuned: int, report: Report
) -> tuple[NDArray[np.float64], _FrozenStates | None]:
    """The probe's features and, when layers below ``first_tuned`` stay frozen and the shortcut
    reproduces the encoder, their kept output."""
    if first_tuned == 0:
        return predictor.embed(texts, report("embed")), None
    hidden = predictor.model.classifier.in_features
    needed = int(_Encoded(predictor, texts).lengths().sum()) * hidden * 4
    if needed > KEPT_STATES_MAX_BYTES:
        logger.warning(
            "keeping the frozen layers' output of %d training rows would take %.1f GiB (more "
            "than %.0f GiB); every training step runs the whole encoder (slower)",
            len(texts),
            needed / 2**30,
            KEPT_STATES_MAX_BYTES / 2**30,
        )
        return predictor.embed(texts, report("embed")), None
    features, frozen = _embed_and_keep_states(predictor, texts, first_tuned, report("embed"))
    tuned = len(layer_list(predictor.model.encoder)[2]) - first_tuned
    if _shortcut_matches(predictor.model, frozen, features, tuned, predictor.device):
        return features, frozen
    logger.warning(
        "%s: running only the tuned layers on kept states does not reproduce the encoder's "
        "output; every training step runs the whole encoder (slower)",
        type(predictor.model.encoder).__name__,
    )
    return features, None


def _train(
    predictor: TransformersPredictor,
    texts: list[str],
    y: NDArray[np.int64],
    params: TransformersParams,
    frozen: _FrozenStates | None,
    progress: Callable[[float], None],
) -> None:
    """AdamW over ``params.epochs`` of length-grouped batches, on the kept states when given,
    else on the texts tokenized once up front. The loss is checked for a non-finite value every
    ``FINITE_CHECK_STEPS`` steps and at the end, not after each step: reading it back waits for
    an accelerator to finish the step, where the next batch could be prepared meanwhile."""
    source: _FrozenStates | _Encoded = frozen if frozen is not None else _Encoded(predictor, texts)
    lengths = source.lengths()
    trainable = [p for p in predictor.model.parameters() if p.requires_grad]
    steps = math.ceil(len(texts) / params.batch_size) * params.epochs
    optimizer, scheduler = _optimizer(trainable, params, steps, predictor.device)
    rng = np.random.default_rng(params.seed)
    target = torch.as_tensor(y, dtype=torch.long)
    finite = torch.ones((), dtype=torch.bool, device=predictor.device)
    step = 0
    for _ in range(params.epochs):
        for rows in length_grouped_batches(lengths, params.batch_size, rng):
            logits = source.logits(predictor, rows)
            loss = nn.functional.cross_entropy(logits.float(), target[rows].to(predictor.device))
            finite &= torch.isfinite(loss.detach())
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            step += 1
            if (step % FINITE_CHECK_STEPS == 0 or step == steps) and not bool(finite):
                raise TrainingError(
                    f"the training loss became non-finite by step {step} of {steps}; "
                    "lower learning_rate"
                )
            progress(step / steps)


class _Encoded:
    """The training texts tokenized once (truncated, unpadded); batches are padded to their
    longest row, on the side the tokenizer pads."""

    def __init__(self, predictor: TransformersPredictor, texts: Sequence[str]) -> None:
        tokenizer = predictor.tokenizer
        self.columns: dict[str, list[list[int]]] = dict(
            tokenizer(list(texts), truncation=True, max_length=predictor.max_length)
        )
        self.pad = {"input_ids": int(tokenizer.pad_token_id or 0)}
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.device = predictor.device

    def lengths(self) -> NDArray[np.intp]:
        return np.array([len(ids) for ids in self.columns["input_ids"]], dtype=np.intp)

    def batch(self, rows: NDArray[np.intp]) -> dict[str, torch.Tensor]:
        picked = rows.tolist()
        width = max(len(self.columns["input_ids"][row]) for row in picked)
        batch: dict[str, torch.Tensor] = {}
        for name, values in self.columns.items():
            padded = np.full((len(picked), width), self.pad.get(name, 0), dtype=np.int64)
            for position, row in enumerate(picked):
                if self.left:  # as the tokenizer pads when the predictor scores
                    padded[position, width - len(values[row]) :] = values[row]
                else:
                    padded[position, : len(values[row])] = values[row]
            batch[name] = torch.from_numpy(padded).to(self.device)
        return batch

    def logits(self, predictor: TransformersPredictor, rows: NDArray[np.intp]) -> torch.Tensor:
        """One training batch through the whole model."""
        with _autocast(predictor):
            logits: torch.Tensor = predictor.model(self.batch(rows))
        return logits


def _autocast(predictor: TransformersPredictor) -> torch.autocast:
    """bfloat16 autocast on CUDA, nothing elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=predictor.device.startswith("cuda"))


def _optimizer(
    trainable: list[nn.Parameter], params: TransformersParams, steps: int, device: str
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no weight decay on biases and LayerNorm weights; fused on CUDA) with a linear
    warm-up over ``WARMUP_FRACTION`` of the ``steps`` and a linear decay after it."""
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": params.weight_decay},
            {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=params.learning_rate,
        fused=device.startswith("cuda"),
    )
    warmup = math.ceil(WARMUP_FRACTION * steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / (steps - warmup + 1))),
    )
    return optimizer, scheduler
