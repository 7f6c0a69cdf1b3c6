"""The method itself: pure functions and small classes over DataFrames and arrays.

Nothing here imports MLflow, Feast or Great Expectations, or knows a file path.
"""
