"""The registered related-video table as MLflow loads it: the table (Parquet artifact), answering
`predict` with each asked video's list: related ids, scores and reasons, in rank order."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

COLUMNS = ["video_id", "related_video_ids", "scores", "reasons"]


class RelatedVideosModel(PythonModel):
    """predict(DataFrame with `video_id`, or a list of ids) -> one row per asked id, in the
    order asked; an id without a list gets empty lists."""

    def load_context(self, context) -> None:
        table = pd.read_parquet(context.artifacts["related_table"])
        table = table.sort_values(["video_id", "rank"], kind="stable")
        grouped = table.groupby("video_id", sort=False)
        self.lists = {
            video_id: (
                group["related_video_id"].tolist(),
                group["score"].tolist(),
                group["reason"].tolist(),
            )
            for video_id, group in grouped
        }

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        ids = (
            model_input["video_id"].astype(str).tolist()
            if isinstance(model_input, pd.DataFrame)
            else [str(v) for v in model_input]
        )
        rows = [(video_id, *self.lists.get(video_id, ([], [], []))) for video_id in ids]
        return pd.DataFrame(rows, columns=COLUMNS)


mlflow.models.set_model(RelatedVideosModel())
