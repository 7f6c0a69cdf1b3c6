"""The steps of the platform: read inputs, call `models`, track in MLflow, gate, write outputs.

Configuration is read once here, at the edge, and handed to `models` as plain values.
"""
