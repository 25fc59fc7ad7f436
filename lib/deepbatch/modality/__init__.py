"""The one registry of what varies by modality, and the contract every modality keeps.

A modality (images, text, clips, or one a team ships as its own package) is one object that
implements :class:`ModalityContract`: its tables' schemas, clean's checks, analyse's profile and
report pictures, the Petastorm schema and encoder, the model inputs, settings and builder, the
predictor cores that score its model folders, their ONNX export and the infer stage's plan.
Stages ask the registry and never compare modality names.

Modalities register through the setuptools entry point group ``deepbatch.modalities``
(``name = package.module:OBJECT``); deepbatch's own three are registered there too, and are
also found when the package runs without its metadata (a zip on an executor's path).

The modules import torch, Spark and the media libraries inside their methods, so the registry
itself is light enough for the CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from deepbatch.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

ENTRY_POINT_GROUP = "deepbatch.modalities"
BUILTIN = {"image": "deepbatch.modality.image:MODALITY", "text": "deepbatch.modality.text:MODALITY",
           "video": "deepbatch.modality.video:MODALITY"}


@dataclass(frozen=True)
class InferPlan:
    """How the infer stage scores one task: the core to build on the executors and how its rows flow.

    ``shape`` series: one input row gives one prediction row (an iterator pandas UDF over ``column``);
    clips: one input row gives frame rows, then one row per input (mapInPandas)."""

    kind: str  # the predictor core (a key of some modality's ``cores``)
    model_dir: str
    options: dict[str, Any]
    column: str  # the input column scored
    shape: str = "series"
    fields: tuple[Any, ...] = ()  # series: the prediction StructFields
    schema: Any = None  # the predictions table (series), or the per-input table (clips)
    frame_schema: Any = None  # clips: the per-frame table
    classes: list[str] | None = None  # the class order of class_probs, written beside the predictions
    arrow_batch: int = 0  # 0: infer.arrow_batch
    rows_per_task: int = 0  # 0: infer.rows_per_task
    inline_max_bytes: int | None = None  # clips: larger inputs are read from source_path in the worker (None: all inline)
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the manifest


@runtime_checkable
class ModalityContract(Protocol):
    """Every member a modality provides. The image, text and video modules implement it; mypy and a unit test hold them to it."""

    @property
    def name(self) -> str: ...
    @property
    def petastorm_fields(self) -> tuple[str, ...]:
        """What training reads of a Petastorm row."""
        ...
    @property
    def models(self) -> tuple[str, ...]:
        """The models a task may train (tasks.<name>.model); the first is the default."""
        ...
    @property
    def pretrained(self) -> tuple[str, ...]:
        """Models that score without training (an inference-only task: labels none)."""
        ...
    @property
    def prefixes(self) -> tuple[str, ...]:
        """Model families named with a prefix, e.g. hf:<local folder>."""
        ...
    @property
    def uses_tokenizer(self) -> bool: ...
    @property
    def default_glob(self) -> str:
        """The usual extensions of a files source its tasks read."""
        ...
    @property
    def reads_records(self) -> bool:
        """Whether its tasks may read a record source (fields.text) as well as files."""
        ...
    @property
    def core_kind(self) -> str:
        """The core that scores its trained model folders."""
        ...
    @property
    def cores(self) -> Mapping[str, Callable[..., Any]]:
        """Core kind -> factory(model_dir, device, **options)."""
        ...
    @property
    def export_check_rows(self) -> Mapping[str, int]:
        """Rows per split the ONNX export is checked, quantised and calibrated on."""
        ...
    @property
    def quantized_graph(self) -> str:
        """The graph int8 quantisation writes (model or frames)."""
        ...
    @property
    def settings_model(self) -> type[BaseModel] | None:
        """Its conf section modalities.<name> (a pydantic model: its keys, defaults and choices); None: it takes none."""
        ...

    def silver_schema(self, metadata: tuple[str, ...]) -> Any:
        """Its source's silver table (a StructType), with the source's metadata fields where it keeps them."""
    def gold_schema(self, metadata: tuple[str, ...]) -> Any:
        """Its tasks' gold table: the silver columns plus label, label_index and split."""
    def check(self, df: Any, conf: Any, classes: list[str] | None, metadata: tuple[str, ...] = (), labelled: bool = False) -> Any:
        """clean: its bronze rows with _reason/_detail set on every rejected row (decode checks, dedup, normalisation)."""
    def profile(self, df: Any) -> dict[str, Any]:
        """analyse: its size or length distributions of a gold table."""
    def samples_per_class(self, per_class: int) -> int:
        """How many sampled records per class the report's data part shows (0: none)."""
    def report_samples(self, by_class: dict[str, list[bytes]]) -> tuple[str, bytes | None]:
        """(what the pictures show, a contact sheet PNG or None) of sampled records' bytes per class."""
    @property
    def preview(self) -> Callable[[bytes | None], bytes | None] | None:
        """A scored record's bytes as a thumbnail PNG in the predictions part; None: its text is shown instead."""
    def unischema(self, d: Any, prep: dict[str, Any]) -> Any:
        """materialize: the Petastorm Unischema of its datasets, for the preprocessing its model expects."""
    def encode_rows(self, rows: Iterable[Any], schema: Any, d: Any, tokenizer_dir: str | None, prep: dict[str, Any]) -> Iterator[Any]:
        """materialize: gold rows as Petastorm rows, through the same preprocessing the predictor core applies."""
    def dataset_extra(self, spark: Any, urls: list[str]) -> dict[str, Any]:
        """Figures its dataset manifest records besides the row counts (e.g. truncated texts)."""
    def to_inputs(self, batch: dict[str, Any], device: Any) -> tuple[tuple[Any, ...], Any]:
        """train: a Petastorm batch as (model inputs, labels) on the device."""
    def settings(self, conf: Any, hp: Any, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model settings, preprocessing) a model folder records, from conf and the task's hyperparameters."""
    def build(self, num_classes: int, settings: dict[str, Any]) -> Any:
        """The model (an nn.Module) from the recorded settings."""
    def save_assets(self, folder: Path, params: dict[str, Any], model: Any) -> None:
        """Files a model folder needs besides its weights (a tokenizer, an encoder's config)."""
    def core_options(self, conf: Any, classes: list[str]) -> dict[str, Any]:
        """Options of its trained core when train checks the ONNX export against torch."""
    def score_rows(self, core: Any, rows: Any) -> Any:
        """Gold rows (pandas) through a core: one row per input with error and class_probs or top_labels/top_probs."""
    def int8_mode(self, requested: str) -> str:
        """The int8 quantisation applied when infer.quantize asks for ``requested`` (dynamic or static)."""
    def infer_plan(self, conf: Any, task: str, model_dir: str) -> InferPlan:
        """infer: how a trained task's gold rows are scored with its model folder."""
    def pretrained_plan(self, conf: Any, task: str, model: str) -> InferPlan:
        """infer: how an inference-only task's silver rows are scored with a pretrained ``model`` (ConfigError if it has none)."""


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


class Registry(Mapping[str, ModalityContract]):
    """The registered modalities by name, loaded on first use (entry points, then the built-ins not found there)."""

    def __init__(self) -> None:
        self._items: dict[str, ModalityContract] | None = None

    def _loaded(self) -> dict[str, ModalityContract]:
        if self._items is None:
            refs = {**BUILTIN, **_entry_points()}
            items = {}
            for name, ref in refs.items():
                obj = _load(ref)
                if not isinstance(obj, ModalityContract) or obj.name != name:
                    raise ConfigError(f"entry point {name} = {ref} (group {ENTRY_POINT_GROUP}) is not a modality named {name!r}: "
                                      "it must be an object implementing deepbatch.modality.ModalityContract")
                items[name] = obj
            self._items = items
        return self._items

    def reload(self) -> None:
        """Forget the loaded modalities: the next lookup reads the entry points again (after installing a modality package)."""
        self._items = None

    def __getitem__(self, name: str) -> ModalityContract:
        return self._loaded()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


MODALITIES = Registry()


def core_factory(kind: str) -> Callable[..., Any]:
    """The factory of predictor core ``kind``, from whichever modality provides it."""
    for m in MODALITIES.values():
        if kind in m.cores:
            return m.cores[kind]
    kinds = sorted(k for m in MODALITIES.values() for k in m.cores)
    raise ConfigError(f"unknown predictor core {kind!r}: the registered modalities provide {', '.join(kinds)}")


@dataclass(frozen=True)
class CoreSpec:
    """What to build on the executor: a picklable, hashable recipe for one predictor core."""

    kind: str  # a core kind of a registered modality (its ``cores``)
    model_dir: str = ""
    options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    device: str = "auto"
    threads: int = 0  # torch threads per worker; 0: spark.task.cpus

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.kind, self.model_dir, self.options, self.device)

    def build(self) -> Any:
        return core_factory(self.kind)(self.model_dir, self.device, **dict(self.options))


def modality_of(conf: Any, task: str) -> ModalityContract:
    """The modality of the declared task ``task`` (conf key tasks.<task>.modality)."""
    name = conf.task(task).modality
    if name not in MODALITIES:
        raise ConfigError(f"conf key 'tasks.{task}.modality' must be one of {', '.join(MODALITIES)}, got {name!r}")
    return MODALITIES[name]


def model_of(conf: Any, task: str) -> str:
    """The task's model name: tasks.<task>.model, or its modality's default."""
    return str(conf.task(task).model or modality_of(conf, task).models[0])


def is_trained(conf: Any, task: str) -> bool:
    """Whether the task trains a model (False: labels none, an inference-only task scoring with a pretrained model)."""
    return bool(conf.task(task).labels != "none")


def modality_settings(conf: Any, name: str) -> Any:
    """The modality's own conf section (modalities.<name>), validated by its settings_model; its defaults when absent."""
    model = MODALITIES[name].settings_model
    if model is None:
        raise ConfigError(f"modality {name!r} takes no settings of its own (conf key 'modalities.{name}')")
    return _validated(model, conf.modalities.get(name, {}), f"modalities.{name}")


def _validated(model: type[BaseModel], data: Any, key: str) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join([key, *(str(p) for p in err["loc"])])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"unknown conf key {where!r}; valid keys here: {', '.join(sorted(model.model_fields))}") from None
        raise ConfigError(f"conf key {where!r}: {err['msg']}, got {err.get('input')!r}") from None


def check_sections(conf: Any) -> None:
    """Every modalities.<name> section names a registered modality that takes settings, and fits its model."""
    for name in conf.modalities:
        if name not in MODALITIES:
            raise ConfigError(f"conf key 'modalities.{name}': no modality {name!r} is registered (registered: {', '.join(MODALITIES)}); "
                              "install its package or remove the section")
        modality_settings(conf, name)


def model_settings(conf: Any, task: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model_settings, preprocessing) of ``task`` from ``conf``: what training records in the model folder
    (config.json's model_settings, preprocessing.json) and what inference rebuilds the model from."""
    settings, preprocessing = modality_of(conf, task).settings(conf, conf.task(task).train, model_of(conf, task))
    return dict(settings), dict(preprocessing)
