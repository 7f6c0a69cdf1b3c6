"""The two entities of the platform: a video (profile features, the related-video table) and a
user (features for the two-tower user side and the coordinating network)."""

from feast import Entity, ValueType

video = Entity(
    name="video",
    join_keys=["video_id"],
    value_type=ValueType.STRING,
    description="A video of the catalog; the contract's videos.video_id.",
)

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A viewer; the contract's users.user_id.",
)
