"""The offline sources: Parquet files the pipeline's features step writes into data/sources/
(a folder swapped in whole). Each row holds from its event_timestamp on."""

from feast import FileSource

video_profile_source = FileSource(
    name="video_profile_source",
    path="data/sources/video_profile.parquet",
    timestamp_field="event_timestamp",
    description="Top-K multi-hot profile per video, as active column indices and their tokens.",
)

video_attributes_source = FileSource(
    name="video_attributes_source",
    path="data/sources/video_attributes.parquet",
    timestamp_field="event_timestamp",
    description="The raw profile attributes of each video, as in the validated videos table.",
)

user_profile_source = FileSource(
    name="user_profile_source",
    path="data/sources/user_profile.parquet",
    timestamp_field="event_timestamp",
    description="The user features of the validated users table.",
)
