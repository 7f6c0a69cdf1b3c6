"""MLflow models from code: each file here is handed to `mlflow.pyfunc.log_model` as the model,
so loading a registered model runs this code on its artifacts and unpickles nothing."""
