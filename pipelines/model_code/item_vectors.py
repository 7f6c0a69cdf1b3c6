"""A registered ALS or two-tower model as MLflow loads it: the item vectors (Parquet artifact),
answering `predict` with each asked video's nearest neighbours by cosine."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class ItemVectorsModel(PythonModel):
    """predict(DataFrame with `video_id` [and `k`]) -> video_id, rank, neighbour_video_id, cosine;
    an id without a vector gets no rows."""

    def load_context(self, context) -> None:
        from models.vectors import ItemVectors

        self.vectors = ItemVectors.from_frame(pd.read_parquet(context.artifacts["item_vectors"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        k = int((params or {}).get("k", 10))
        known = set(self.vectors.video_ids)
        frames = []
        for video_id in model_input["video_id"].astype(str):
            if video_id not in known:
                continue
            found = self.vectors.neighbours(video_id, k)
            frames.append(
                pd.DataFrame(
                    {
                        "video_id": video_id,
                        "rank": range(1, len(found) + 1),
                        "neighbour_video_id": found["video_id"],
                        "cosine": found["cosine"],
                    }
                )
            )
        columns = ["video_id", "rank", "neighbour_video_id", "cosine"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


mlflow.models.set_model(ItemVectorsModel())
