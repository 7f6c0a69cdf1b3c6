"""The registered coordinating network as MLflow loads it: the Keras network and its encoders
(artifact folder), answering `predict` with p_<objective> per event row."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class CoordinatingNetworkModel(PythonModel):
    def load_context(self, context) -> None:
        from models.coordinating import CoordinatingNetwork

        self.network = CoordinatingNetwork.load(context.artifacts["network"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.network.predict(model_input)


mlflow.models.set_model(CoordinatingNetworkModel())
