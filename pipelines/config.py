"""Load `config.yaml` into typed, frozen objects; layer a YAML file and `key=value` overrides.

Unknown keys and wrong types fail at load time with the dotted key named, not later in a step.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models.evidence import EVIDENCE

DEFAULT_CONFIG_PATH = Path(__file__).with_name("config.yaml")


class ConfigError(ValueError):
    """A configuration file or override is malformed; the message names the key."""


@dataclass(frozen=True)
class Paths:
    workspace: str
    kuairand: str


@dataclass(frozen=True)
class MlflowSettings:
    experiment: str
    tracking_uri: str


@dataclass(frozen=True)
class DataSection:
    dataset: str
    csv_list_separator: str


@dataclass(frozen=True)
class GateSettings:
    max_play_ratio: float
    duplicate_event_tolerance: float
    future_slack: str
    examples: int
    min_event_ts: str
    epoch_ms_from: float


@dataclass(frozen=True)
class DatasetConfig:
    video_attributes: dict[str, str]
    user_categorical: list[str]
    user_numeric: list[str]
    source_window: str
    timezone: str = "UTC"
    files: dict[str, str] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    # Per table, contract column -> the file's name for it (pipelines/columns.py).
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    interaction_only: bool = False  # a log without impressions (pipelines/interactions.py)


@dataclass(frozen=True)
class SyntheticSize:
    videos: int
    users: int
    events: int
    days: int


@dataclass(frozen=True)
class SyntheticCatalog:
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


@dataclass(frozen=True)
class SyntheticAudience:
    genders: dict[str, float]
    age_buckets: dict[str, float]
    segment_concentration: float
    genre_concentration: float
    activity_sd: float
    levels: int
    level_noise: float
    registration_days: int
    taste_sd: float


@dataclass(frozen=True)
class BehaviourParams:
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


@dataclass(frozen=True)
class SyntheticSessions:
    policy: dict[str, float]
    first_blockbuster_share: float
    max_steps: int
    stop_prob: float
    step_gap_s: list[float]
    session_gap_hours: float
    first_session_hours: float
    initial_events_per_session: float


@dataclass(frozen=True)
class SyntheticConfig:
    size: str
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

    @property
    def preset(self) -> SyntheticSize:
        if self.size not in self.sizes:
            raise ConfigError(f"synthetic.size: {self.size!r} is not one of {sorted(self.sizes)}")
        return self.sizes[self.size]


@dataclass(frozen=True)
class AlsParams:
    rank: int
    max_iter: int
    reg_param: float
    alpha: float


@dataclass(frozen=True)
class Objective:
    name: str
    group: str
    value: str
    label: str
    sign: int
    als: AlsParams


@dataclass(frozen=True)
class CandidatesConfig:
    threshold: float
    max_per_source: int
    top_k_values: int
    block_size: int
    min_per_source: int
    fill_threshold: float
    fill_pool: int


@dataclass(frozen=True)
class CoordinatingConfig:
    threshold: float
    hidden_units: list[int]
    folds: int
    epochs: int
    batch_size: int
    learning_rate: float


@dataclass(frozen=True)
class TwoTowerConfig:
    tower_units: list[int]
    embedding_dim: int
    loss: str
    optimizer: str
    learning_rate: float
    batch_size: int
    max_epochs: int
    early_stopping_patience: int
    validation_share: float
    negatives_per_positive: int
    one_hot_max_tokens: int
    initial_cosine_scale: float
    sgd_momentum: float
    id_dropout: float


@dataclass(frozen=True)
class TrainingConfig:
    als_engine: str
    holdout_share: float
    min_positives: int
    spark_master: str
    two_tower_skip: list[str]
    workers: int
    parallel_min_events: int


@dataclass(frozen=True)
class MergeConfig:
    top_n: int
    manual_weights: dict[str, float]
    weights: str
    max_tied_list_share: float


@dataclass(frozen=True)
class WeightsConfig:
    retention_days: int
    min_retained_users: int
    learn_from: list[str]
    select_on: list[str]
    validation_share: float
    min_positive_pairs: int
    prior_strength: float
    two_tower_min_gain: float
    listwise: bool
    selection_z: float
    evidence: list[str]
    popularity_of: str


@dataclass(frozen=True)
class EvaluationConfig:
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


@dataclass(frozen=True)
class ExperimentConfig:
    days: int
    replicates: int
    aa_replicates: int
    confidence: float
    baseline: str


@dataclass(frozen=True)
class PromotionConfig:
    tolerance: float
    absolute_tolerance: float
    metrics: list[str]
    max_churn: float | None  # None: no limit on the share of list entries a challenger replaces
    accept_churn: bool


@dataclass(frozen=True)
class ExplorerConfig:
    mlflow_ui: str
    search_results: int
    compare_videos: int
    histogram_bins: int
    cached_tables: int


@dataclass(frozen=True)
class ServingConfig:
    online_store: str
    redis: str
    host: str
    port: int
    max_n: int
    workers: int
    explorer: ExplorerConfig
    docs: bool = False
    max_header_bytes: int = 65536


@dataclass(frozen=True)
class Config:
    seed: int
    paths: Paths
    mlflow: MlflowSettings
    data: DataSection
    datasets: dict[str, DatasetConfig]
    gate: GateSettings
    synthetic: SyntheticConfig
    objectives: list[Objective]
    candidates: CandidatesConfig
    coordinating: CoordinatingConfig
    two_tower: TwoTowerConfig
    training: TrainingConfig
    merge: MergeConfig
    weights: WeightsConfig
    evaluation: EvaluationConfig
    experiment: ExperimentConfig
    promotion: PromotionConfig
    serving: ServingConfig
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def dataset(self) -> DatasetConfig:
        """The active data set's settings (`data.dataset`)."""
        return self.datasets[self.data.dataset]

    @property
    def gate_settings(self) -> GateSettings:
        """The input gate's defaults with the active data set's `gate` overrides applied."""
        return _build(GateSettings, {**dataclasses.asdict(self.gate), **self.dataset.gate}, "gate")

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
    config = _build(Config, dict(raw), "")
    if config.data.dataset not in config.datasets:
        raise ConfigError(
            f"data.dataset: {config.data.dataset!r} is not one of {sorted(config.datasets)}"
        )
    for name, dataset in config.datasets.items():
        for column, kind in dataset.video_attributes.items():
            if kind not in ("single", "multi"):
                raise ConfigError(
                    f"datasets.{name}.video_attributes.{column}: {kind!r} is not single or multi"
                )
    for name in config.datasets:
        _check_gate(dataclasses.replace(config, data=DataSection(name, "")).gate_settings, name)
    names = config.objective_names()
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives: names repeat: {names}")
    unknown = set(config.merge.manual_weights) - set(names)
    if unknown:
        raise ConfigError(f"merge.manual_weights: {sorted(unknown)} are not objectives {names}")
    for key, listed in (
        ("training.two_tower_skip", config.training.two_tower_skip),
        ("weights.select_on", config.weights.select_on),
        ("weights.learn_from", config.weights.learn_from),
        ("weights.popularity_of", [config.weights.popularity_of]),
    ):
        unknown = set(listed) - set(names)
        if unknown:
            raise ConfigError(f"{key}: {sorted(unknown)} are not objectives {names}")
    unknown = sorted(set(config.weights.evidence) - set(EVIDENCE))
    if unknown:
        raise ConfigError(f"weights.evidence: {unknown} are not of {list(EVIDENCE)}")
    clash = sorted(set(config.weights.evidence) & set(names))
    if clash:
        raise ConfigError(f"objectives: {clash} are names of weights.evidence; rename them")
    weightings = ("auto", "transitions", "equal", "retention")
    if config.merge.weights not in weightings:
        raise ConfigError(f"merge.weights: {config.merge.weights!r} is not one of {weightings}")
    candidates = config.candidates
    if not 0 < candidates.fill_threshold <= candidates.threshold:
        raise ConfigError(
            f"candidates.fill_threshold: {candidates.fill_threshold} must lie in (0, "
            f"candidates.threshold = {candidates.threshold}]"
        )
    if not 0 <= candidates.min_per_source <= candidates.max_per_source:
        raise ConfigError(
            f"candidates.min_per_source: {candidates.min_per_source} must lie in [0, "
            f"candidates.max_per_source = {candidates.max_per_source}] (0: no filling)"
        )
    if candidates.fill_pool < 1:
        raise ConfigError(f"candidates.fill_pool: {candidates.fill_pool} must be at least 1")
    if not 0 < config.weights.validation_share < 1:
        raise ConfigError(
            f"weights.validation_share: {config.weights.validation_share} must lie in (0, 1)"
        )
    if config.training.workers < 0:
        raise ConfigError(
            f"training.workers: {config.training.workers} must be at least 0 (0: one per core)"
        )
    if config.training.als_engine not in ("implicit", "spark"):
        raise ConfigError(
            f"training.als_engine: {config.training.als_engine!r} is not implicit or spark"
        )
    if not (config.promotion.tolerance >= 0 and config.promotion.absolute_tolerance >= 0):
        raise ConfigError(
            "promotion.tolerance and promotion.absolute_tolerance: must be at least 0 "
            f"(got {config.promotion.tolerance} and {config.promotion.absolute_tolerance})"
        )
    max_churn = config.promotion.max_churn
    if max_churn is not None and (
        isinstance(max_churn, bool)
        or not isinstance(max_churn, int | float)
        or not 0 <= max_churn <= 1
    ):
        raise ConfigError(f"promotion.max_churn: {max_churn!r} is not null or a number in 0..1")
    for key, value in dataclasses.asdict(config.serving.explorer).items():
        if key != "mlflow_ui" and value < 1:
            raise ConfigError(f"serving.explorer.{key}: {value} must be at least 1")
    if not 1 <= config.serving.port <= 65535:
        raise ConfigError(f"serving.port: {config.serving.port} is not a TCP port (1..65535)")
    if config.serving.max_header_bytes < 1024:
        raise ConfigError(
            f"serving.max_header_bytes: {config.serving.max_header_bytes} is below 1024, too "
            "small for an ordinary request's headers"
        )
    config.synthetic.preset  # noqa: B018  (validates synthetic.size)
    from pipelines.interactions import check_dataset_keys, with_mode  # imports this module

    check_dataset_keys(config)
    return with_mode(dataclasses.replace(config, raw=copy.deepcopy(dict(raw))))


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


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping, checking keys and types recursively."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "raw"}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigError(f"{_join(where, sorted(unknown)[0])}: unknown key")
    values = {}
    for name, spec in fields.items():
        key = _join(where, name)
        if name not in raw:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: missing")
            continue
        values[name] = _coerce(hints[name], raw[name], key)
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(value_type, v, _join(key, str(k))) for k, v in value.items()}
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is Any:
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is str and isinstance(value, datetime.date):
        return value.isoformat()  # YAML reads an unquoted 2000-01-01 as a date
    if hint is bool and isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
