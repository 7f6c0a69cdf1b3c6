"""Load `config.yaml` into strict, frozen pydantic models; layer a YAML file and `--set` overrides.

Unknown keys, wrong types and values out of range fail at load time with the dotted key named.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetPydanticSchema,
    PrivateAttr,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

from models.evidence import EVIDENCE
from models.params import AlsParams, CoordinatingParams, TwoTowerParams

DEFAULT_CONFIG_PATH = Path(__file__).with_name("config.yaml")


class ConfigError(ValueError):
    """A configuration file or override is malformed; the message names the key."""


class Section(BaseModel):
    """A block of the configuration: strict types (YAML's int may stand for a float), frozen,
    no unknown key."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


def _list_as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _from_yaml(hint: Any) -> Any:
    """A parameter field's type as YAML gives it: a list where the field holds a tuple or a
    sequence (kept a tuple, as the models' own callers pass it)."""
    if typing.get_origin(hint) in (tuple, Sequence):
        item = typing.get_args(hint)[0]
        return Annotated[tuple[item, ...], BeforeValidator(_list_as_tuple)]
    return hint


def _parameters(params: type) -> GetPydanticSchema:
    """Validation of a models/ parameter dataclass (models/params.py) as a configuration block:
    its own fields, checked as strictly as any section, then the dataclass itself is the value.
    The models stay free of pydantic; the configuration holds no copy of their fields."""
    hints = typing.get_type_hints(params)
    fields: dict[str, Any] = {
        field.name: (
            _from_yaml(hints[field.name]),
            ... if field.default is dataclasses.MISSING else field.default,
        )
        for field in dataclasses.fields(params)
    }
    block = create_model(params.__name__, __base__=Section, **fields)

    def schema(_source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(
            lambda values: params(**dict(values)),
            handler.generate_schema(block),
            serialization=core_schema.plain_serializer_function_ser_schema(dataclasses.asdict),
        )

    return GetPydanticSchema(schema)


def _check(ok: Callable[[Any], bool], why: str) -> AfterValidator:
    """A value's own condition; `why` follows the key and the value in the error."""

    def check(value: Any) -> Any:
        if not ok(value):
            raise ValueError(why)
        return value

    return AfterValidator(check)


Count = Annotated[int, Field(ge=1)]
Share = Annotated[float, Field(gt=0, lt=1)]
NonNegative = Annotated[float, Field(ge=0)]


# --- Where things are, what is read ------------------------------------------------------------


class Paths(Section):
    workspace: str
    kuairand: str


class MlflowSettings(Section):
    experiment: str
    tracking_uri: str


class DataSection(Section):
    dataset: str
    csv_list_separator: str


class GateSettings(Section):
    max_play_ratio: float
    duplicate_event_tolerance: float
    future_slack: str
    examples: int
    min_event_ts: str
    epoch_ms_from: float


class DatasetConfig(Section):
    # single: one string per video; multi: a list of strings.
    video_attributes: dict[str, Literal["single", "multi"]]
    user_categorical: list[str]
    user_numeric: list[str]
    source_window: str
    timezone: str = "UTC"
    files: dict[str, str] = {}
    gate: dict[str, Any] = {}  # overrides of the gate defaults, checked as GateSettings
    # Per table, contract column -> the file's name for it (pipelines/columns.py).
    columns: dict[str, dict[str, str]] = {}
    interaction_only: bool = False  # a log without impressions (pipelines/interactions.py)


# --- The synthetic world (simulator/): how the generated data set is made ----------------------


class SyntheticSize(Section):
    videos: int
    users: int
    events: int
    days: int


class SyntheticCatalog(Section):
    age_days: int
    styles_per_genre: int
    tags_per_genre: int
    actors_per_genre: int
    staff_per_genre: int
    series_cast: int
    series_staff: int
    series_tags: int
    series_genre_tags: int
    member_keep: float
    guest_share: float
    standalone_cast: int
    standalone_staff: int
    standalone_tags: int
    video_tags: int
    series_types: dict[str, float]
    type_keep: float
    extra_types: dict[str, float]
    standalone_types: dict[str, float]
    durations_s: dict[str, list[float]]
    quality_sd: float
    appeal_sd: float
    blockbuster_appeal: float
    popularity_temperature: float


class SyntheticAudience(Section):
    genders: dict[str, float]
    age_buckets: dict[str, float]
    segment_concentration: float
    genre_concentration: float
    activity_sd: float
    levels: int
    level_noise: float
    registration_days: int
    taste_sd: float


class BehaviourParams(Section):
    match: dict[str, float]
    affinity_range: list[float]
    click: dict[str, float]
    play: dict[str, float]
    play_noise_sd: float
    accidental_play_s: list[float]
    like: dict[str, float]
    share: dict[str, float]
    dislike: dict[str, float]
    satisfaction: dict[str, float]
    satisfaction_prior: float
    satisfaction_memory: float
    churn: dict[str, float]


class SyntheticSessions(Section):
    policy: dict[str, float]
    first_blockbuster_share: float
    max_steps: int
    stop_prob: float
    step_gap_s: list[float]
    session_gap_hours: float
    first_session_hours: float
    initial_events_per_session: float


class SyntheticConfig(Section):
    size: str  # a key of `sizes`
    sizes: dict[str, SyntheticSize]
    start_date: str
    genres: int
    series_size: list[int]
    standalone_share: float
    blockbuster_share: float
    cold_share: float
    accidental_click_rate: float
    slate_size: int
    retention_days: int
    blockbuster_min: int
    cold_window_days: int
    cold_exposure: float
    catalog: SyntheticCatalog
    audience: SyntheticAudience
    behaviour: BehaviourParams
    sessions: SyntheticSessions

    @model_validator(mode="after")
    def _size_is_a_preset(self) -> SyntheticConfig:
        self.preset  # noqa: B018  (raises for an unknown size)
        return self

    @property
    def preset(self) -> SyntheticSize:
        if self.size not in self.sizes:
            raise ConfigError(f"synthetic.size: {self.size!r} is not one of {sorted(self.sizes)}")
        return self.sizes[self.size]


# --- The models and the table ------------------------------------------------------------------

# How an objective's user-video matrix cell is built, and its coordinating-network label: the
# names of models/objectives.py (VALUES, LABELS), written out so that reading the configuration
# imports no numerical library (tests/pipelines/test_config.py checks they agree).
ObjectiveValue = Literal["clicks", "log1p_play_time", "likes", "shares", "dislikes"]
ObjectiveLabel = Literal["clicked", "watched_half", "liked", "shared", "disliked"]


class Objective(Section):
    name: str
    group: str
    value: ObjectiveValue
    label: ObjectiveLabel
    sign: Literal[1, -1]  # -1 subtracts in the merge
    als: Annotated[AlsParams, _parameters(AlsParams)]


class CandidatesConfig(Section):
    threshold: float
    max_per_source: int
    top_k_values: int
    block_size: int
    min_per_source: int
    fill_threshold: float
    fill_pool: Count
    fill_ranks: Literal["auto", "by_score", "after_gated"]

    @model_validator(mode="after")
    def _fill_within_the_gate(self) -> CandidatesConfig:
        if not 0 < self.fill_threshold <= self.threshold:
            raise ConfigError(
                f"candidates.fill_threshold: {self.fill_threshold} must lie in (0, "
                f"candidates.threshold = {self.threshold}]"
            )
        if not 0 <= self.min_per_source <= self.max_per_source:
            raise ConfigError(
                f"candidates.min_per_source: {self.min_per_source} must lie in [0, "
                f"candidates.max_per_source = {self.max_per_source}] (0: no filling)"
            )
        return self


class TrainingConfig(Section):
    als_engine: Literal["implicit", "spark"]
    holdout_share: float
    min_positives: int
    spark_master: str
    two_tower_skip: list[str]
    routing: Literal["auto", "always", "never"]
    workers: Annotated[int, _check(lambda n: n >= 0, "must be at least 0 (0: one per core)")]
    parallel_min_events: int


class MergeConfig(Section):
    top_n: int
    manual_weights: dict[str, float]
    weights: Literal[
        "auto", "transitions", "equal", "retention", "popularity", "cooccurrence", "content"
    ]
    max_tied_list_share: float


class WeightsConfig(Section):
    retention_days: int
    min_retained_users: int
    learn_from: list[str]
    select_on: list[str]
    validation_share: Share
    min_positive_pairs: int
    prior_strength: float
    two_tower_min_gain: float
    listwise: bool
    selection_z: float
    evidence: list[str]  # of models/evidence.py's EVIDENCE
    popularity_of: str
    risk_guard: Literal["none", "content", "popularity", "cooccurrence"]  # a bar of fusion.BARS
    risk_penalties: list[Annotated[float, Field(ge=0)]]

    @model_validator(mode="after")
    def _known_evidence(self) -> WeightsConfig:
        unknown = sorted(set(self.evidence) - set(EVIDENCE))
        if unknown:
            raise ConfigError(f"weights.evidence: {unknown} are not of {list(EVIDENCE)}")
        return self


# --- Judging, promoting and serving a table ----------------------------------------------------


class TowerProbe(Section):
    epochs: Annotated[int, Field(ge=0)]
    max_positives: Annotated[int, Field(ge=1)]


class EvaluationConfig(Section):
    test_days: int
    baseline: str
    min_test_events: int
    min_test_sources: int
    max_test_share: float
    at: int
    cold_max_events: int
    item_cf_min_cooccurrence: int
    ungated_neighbours: int
    ungated_block_size: int
    main_methods: list[str]
    bootstrap_resamples: int
    two_tower_probe: TowerProbe


class ExperimentConfig(Section):
    days: int
    replicates: int
    aa_replicates: int
    confidence: float
    baseline: str


class PromotionConfig(Section):
    tolerance: NonNegative
    absolute_tolerance: NonNegative
    metrics: list[str]
    # None: no limit on the share of list entries a challenger replaces.
    max_churn: Annotated[float, Field(ge=0, le=1)] | None
    accept_churn: bool


class ExplorerConfig(Section):
    mlflow_ui: str
    search_results: Count
    compare_videos: Count
    histogram_bins: Count
    cached_tables: Count


class ServingConfig(Section):
    online_store: Literal["sqlite", "redis"]
    redis: str
    host: str
    port: Annotated[int, _check(lambda port: 1 <= port <= 65535, "is not a TCP port (1..65535)")]
    max_n: int
    workers: int
    explorer: ExplorerConfig
    docs: bool = False
    max_header_bytes: Annotated[
        int,
        _check(lambda n: n >= 1024, "is below 1024, too small for an ordinary request's headers"),
    ] = 65536


# --- The whole configuration -------------------------------------------------------------------


class Config(Section):
    """config.yaml as read: one attribute per top-level key; `raw` is the mapping itself."""

    seed: int  # every model's seed (coordinating.seed and two_tower.seed are this)
    paths: Paths
    mlflow: MlflowSettings
    data: DataSection
    datasets: dict[str, DatasetConfig]
    gate: GateSettings
    synthetic: SyntheticConfig
    objectives: list[Objective]
    candidates: CandidatesConfig
    coordinating: Annotated[CoordinatingParams, _parameters(CoordinatingParams)]
    two_tower: Annotated[TwoTowerParams, _parameters(TwoTowerParams)]
    training: TrainingConfig
    merge: MergeConfig
    weights: WeightsConfig
    evaluation: EvaluationConfig
    experiment: ExperimentConfig
    promotion: PromotionConfig
    serving: ServingConfig
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, raw: Any) -> Any:
        """YAML's types made the configuration's (an unquoted 2000-01-01 is a date and `1:` an
        int key: both are read as text), and the top-level seed given to the models' blocks."""
        if not isinstance(raw, Mapping):
            return raw
        raw = _plain(raw)
        for section in ("coordinating", "two_tower"):
            block = raw.get(section)
            if isinstance(block, dict):
                if "seed" in block:
                    raise ConfigError(f"{section}.seed: unknown key (the top-level seed seeds it)")
                raw[section] = {**block, "seed": raw.get("seed")}
        return raw

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        """What no single block can check: names that must refer to each other."""
        if self.data.dataset not in self.datasets:
            raise ConfigError(
                f"data.dataset: {self.data.dataset!r} is not one of {sorted(self.datasets)}"
            )
        for name in self.datasets:
            _check_gate(self.gate_of(name), name)
        names = self.objective_names()
        if len(set(names)) != len(names):
            raise ConfigError(f"objectives: names repeat: {names}")
        for key, listed in (
            ("merge.manual_weights", list(self.merge.manual_weights)),
            ("training.two_tower_skip", self.training.two_tower_skip),
            ("weights.select_on", self.weights.select_on),
            ("weights.learn_from", self.weights.learn_from),
            ("weights.popularity_of", [self.weights.popularity_of]),
        ):
            unknown = set(listed) - set(names)
            if unknown:
                raise ConfigError(f"{key}: {sorted(unknown)} are not objectives {names}")
        clash = sorted(set(self.weights.evidence) & set(names))
        if clash:
            raise ConfigError(f"objectives: {clash} are names of weights.evidence; rename them")
        return self

    @property
    def raw(self) -> dict[str, Any]:
        """The mapping the configuration was read from (the digests and the remembered copy)."""
        return self._raw

    @property
    def dataset(self) -> DatasetConfig:
        """The active data set's settings (`data.dataset`)."""
        return self.datasets[self.data.dataset]

    @property
    def gate_settings(self) -> GateSettings:
        """The input gate's defaults with the active data set's `gate` overrides applied."""
        return self.gate_of(self.data.dataset)

    def gate_of(self, dataset: str) -> GateSettings:
        """The input gate's defaults with data set `dataset`'s `gate` overrides applied."""
        overrides = self.datasets[dataset].gate
        return _validated(GateSettings, {**self.gate.model_dump(), **overrides}, "gate")

    @property
    def workspace(self) -> Path:
        return Path(self.paths.workspace)

    def objective_names(self) -> list[str]:
        return [objective.name for objective in self.objectives]


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """The default configuration, then the YAML file at `path`, then `key.sub=value` overrides."""
    raw = _read_yaml(DEFAULT_CONFIG_PATH)
    if path is not None:
        raw = deep_merge(raw, relative_to(_read_yaml(Path(path)), Path(path).resolve().parent))
    for override in overrides:
        raw = deep_merge(raw, parse_override(override))
    return config_from_dict(raw)


def relative_to(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A config file's paths (`paths.*`, `datasets.<name>.files.*`) made absolute against the
    file's folder, so the file means the same from any working directory. Absolute paths stay;
    `--set` overrides are the caller's and resolve from the current directory."""
    raw = copy.deepcopy(raw)

    def resolve(section: Any) -> None:
        if not isinstance(section, dict):
            return
        for key, value in section.items():
            if isinstance(value, str) and value:
                path = Path(value).expanduser()
                section[key] = str(path if path.is_absolute() else folder / path)

    resolve(raw.get("paths"))
    for dataset in (raw.get("datasets") or {}).values():
        if isinstance(dataset, dict):
            resolve(dataset.get("files"))
    return raw


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """The configuration a complete mapping (the defaults with any layers merged) describes;
    a ConfigError names the first key that is wrong."""
    config = _validated(Config, raw)
    config._raw = copy.deepcopy(dict(raw))
    from pipelines.interactions import check_dataset_keys, with_mode  # imports this module

    check_dataset_keys(config)
    return with_mode(config)


def _check_gate(settings: GateSettings, dataset: str) -> None:
    """Gate settings a step would otherwise trip over late: the lower bound on event times is
    an ISO date, the epoch threshold is positive."""
    try:
        datetime.datetime.fromisoformat(settings.min_event_ts)
    except ValueError as error:
        raise ConfigError(
            f"gate.min_event_ts (data set {dataset}): {settings.min_event_ts!r} is not an ISO "
            'date, e.g. "2000-01-01"'
        ) from error
    if not settings.epoch_ms_from > 0:
        raise ConfigError(
            f"gate.epoch_ms_from (data set {dataset}): {settings.epoch_ms_from} must be above 0"
        )


def parse_override(override: str) -> dict[str, Any]:
    """`a.b.c=value` to `{"a": {"b": {"c": value}}}`; the value is parsed as YAML."""
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r}: expected key.path=value")
    parsed = yaml.safe_load(value) if value.strip() else ""
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = parsed
    return nested


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `update` laid over it, mapping by mapping; neither is changed."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the configuration file ({error})") from error
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded


def _plain(value: Any) -> Any:
    """YAML's dates as ISO text and its mapping keys as text, all the way down."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


_SectionT = typing.TypeVar("_SectionT", bound=BaseModel)


def _validated(model: type[_SectionT], raw: Any, where: str = "") -> _SectionT:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise _config_error(error, where) from None


# pydantic's error types, in the words the configuration's errors have always used.
_EXPECTED = {
    "int_type": "int",
    "float_type": "float",
    "string_type": "str",
    "bool_type": "bool",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least"),
    "greater_than": ("gt", "must be above"),
    "less_than_equal": ("le", "must be at most"),
    "less_than": ("lt", "must be below"),
}


def _config_error(error: ValidationError, where: str = "") -> ConfigError:
    """The first of pydantic's errors as a ConfigError: the dotted key, then what is wrong."""
    first = error.errors(include_url=False)[0]
    kind, value, context = first["type"], first.get("input"), first.get("ctx") or {}
    if isinstance(context.get("error"), ConfigError):  # a validator's own, key named
        return context["error"]
    key = _dotted(where, first["loc"]) or "config"
    describe: dict[str, Callable[[], str]] = {
        "extra_forbidden": lambda: "unknown key",
        "missing": lambda: "missing",
        "literal_error": lambda: f"{value!r} is not {context.get('expected')}",
        "value_error": lambda: f"{value!r} {context.get('error')}",
    }
    if kind in _EXPECTED:
        text = f"expected {_EXPECTED[kind]}, got {value!r}"
    elif kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        text = f"{value!r} {words} {context.get(bound)}"
    elif kind in describe:
        text = describe[kind]()
    else:
        text = f"{first['msg']}, got {value!r}"
    return ConfigError(f"{key}: {text}")


def _dotted(where: str, loc: Iterable[int | str]) -> str:
    key = where
    for part in loc:
        key = f"{key}[{part}]" if isinstance(part, int) else f"{key}.{part}" if key else str(part)
    return key
