"""The published related-video table, served online: two copies of one view, blue and green, take
turns. The pipeline's publish step materializes a new table into the idle copy, checks it, then
makes it live by replacing data/related/live.json (one rename), so a reader never sees a mix.

Ask `related-videos related <video_id>` or read data/related/live.json for the live copy.
"""

from datetime import timedelta

from entities import video
from feast import FeatureView, Field, FileSource
from feast.types import Array, Float64, String

COLORS = ("blue", "green")


def _view(color: str) -> FeatureView:
    source = FileSource(
        name=f"related_videos_{color}_source",
        path=f"data/related/{color}.parquet",
        timestamp_field="event_timestamp",
        description=f"The related-video table published into the {color} copy (one row per video).",
    )
    return FeatureView(
        name=f"related_videos_{color}",
        entities=[video],
        ttl=timedelta(0),
        schema=[
            Field(name="related_video_ids", dtype=Array(String)),  # best first
            Field(name="scores", dtype=Array(Float64)),
            Field(name="reasons", dtype=Array(String)),
            # The registered related-videos version the row belongs to: a row of another
            # version than the live one (a video dropped since) is not served.
            Field(name="table_version", dtype=String),
        ],
        source=source,
        online=True,
        description=f"Related videos per source video, {color} copy (live when live.json says so).",
        tags={"stage": "3", "pointer": "data/related/live.json"},
    )


related_videos_blue = _view("blue")
related_videos_green = _view("green")
