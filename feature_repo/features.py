"""Feature views: the video profile (top-K multi-hot encoding and raw attributes) and the user
profile. Profiles do not expire (ttl 0): a value holds until a newer row replaces it."""

from datetime import timedelta

from columns import COLUMNS
from data_sources import user_profile_source, video_attributes_source, video_profile_source
from entities import user, video
from feast import FeatureView, Field
from feast.types import Array, Float64, Int64, String

NO_EXPIRY = timedelta(0)

video_profile = FeatureView(
    name="video_profile",
    entities=[video],
    ttl=NO_EXPIRY,
    schema=[
        # Column indices into data/sources/profile_vocabulary.parquet (column, attribute, value).
        Field(name="profile_indices", dtype=Array(Int64)),
        Field(name="profile_tokens", dtype=Array(String)),  # "attribute=value", same order
        Field(name="duration_s", dtype=Float64),
    ],
    source=video_profile_source,
    online=True,
    description="Top-K multi-hot profile: the stage 1 encoding, read by the models.",
    tags={"stage": "1", "vocabulary": "data/sources/profile_vocabulary.parquet"},
)

video_attributes = FeatureView(
    name="video_attributes",
    entities=[video],
    ttl=NO_EXPIRY,
    schema=[
        Field(name=name, dtype=Array(String) if kind == "multi" else String)
        for name, kind in COLUMNS["video_attributes"].items()
    ],
    source=video_attributes_source,
    online=True,
    description="Raw profile attributes (the data set's configured columns).",
    tags={"dataset": COLUMNS["dataset"]},
)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=NO_EXPIRY,
    schema=[
        *(Field(name=name, dtype=String) for name in COLUMNS["user_categorical"]),
        *(Field(name=name, dtype=Float64) for name in COLUMNS["user_numeric"]),
    ],
    source=user_profile_source,
    online=True,
    description="User features for the coordinating network and the two-tower user side.",
    tags={"dataset": COLUMNS["dataset"]},
)
