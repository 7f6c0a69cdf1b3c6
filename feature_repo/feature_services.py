"""One FeatureService per model that reads features: the coordinating network and the
two-tower model (its user tower reads the user profile, its item tower the video profile)."""

from feast import FeatureService
from features import user_profile, video_profile

coordinating_network = FeatureService(
    name="coordinating_network",
    features=[user_profile, video_profile[["profile_indices", "duration_s"]]],
    description="Per event: the user's features and the video's profile, point-in-time.",
)

two_tower = FeatureService(
    name="two_tower",
    features=[user_profile, video_profile[["profile_indices"]]],
    description="Per routed positive: the user's features (user tower) and the video's profile.",
)
