"""The README's "Bring your own data" walk-through, run as written on a small ratings-style log
made here (MovieLens layout, epoch seconds, other column names), to a served list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import cli
from tests.conftest import SMALL_MODELS

REPO = Path(__file__).resolve().parents[2]
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Animation")


def readme_blocks() -> dict[str, str]:
    """The python, yaml and bash blocks of the README's "Bring your own data" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Bring your own data\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"```(python|yaml|bash)\n(.*?)```", section, flags=re.S))


def ratings_log(folder: Path, seed: int = 5, users: int = 150, movies: int = 120) -> None:
    """`ratings.csv` (userId, movieId, rating, timestamp in epoch seconds) and `movies.csv`
    (movieId, title, genres joined with |): users rate a few movies of their favourite genres
    per sitting, minutes apart, over six weeks."""
    rng = np.random.default_rng(seed)
    movie_genres = [
        "|".join(rng.choice(GENRES, size=rng.integers(1, 3), replace=False)) for _ in range(movies)
    ]
    pd.DataFrame(
        {
            "movieId": np.arange(1, movies + 1),
            "title": [f"Movie {i} (19{70 + i % 30})" for i in range(1, movies + 1)],
            "genres": movie_genres,
        }
    ).to_csv(folder / "movies.csv", index=False)
    start = int(pd.Timestamp("2024-03-01", tz="UTC").timestamp())
    rows = []
    for user in range(1, users + 1):
        liked = set(rng.choice(GENRES, size=2, replace=False))
        fits = np.array([bool(liked & set(g.split("|"))) for g in movie_genres], dtype=float)
        weights = (fits * 4 + 1) / (fits * 4 + 1).sum()
        for _ in range(rng.integers(3, 9)):  # sittings
            at = start + int(rng.integers(0, 42 * 86_400))
            for movie in rng.choice(movies, size=rng.integers(3, 8), replace=False, p=weights):
                at += int(rng.integers(60, 900))
                rating = float(np.clip(rng.normal(3.8 if fits[movie] else 2.6, 1.0), 0.5, 5))
                rows.append((user, movie + 1, round(rating * 2) / 2, at))
    frame = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    frame.drop_duplicates(["userId", "movieId"]).to_csv(folder / "ratings.csv", index=False)


@pytest.fixture
def converted(tmp_path: Path, monkeypatch) -> Path:
    """The README's conversion and configuration, in a folder holding a generated log."""
    blocks = readme_blocks()
    ratings_log(tmp_path)
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks["python"], "README.md (Bring your own data)", "exec"), {})
    (tmp_path / "movies.yaml").write_text(blocks["yaml"])
    return tmp_path


def readme_commands() -> list[list[str]]:
    """The walk-through's commands, as argument lists for `cli.main`."""
    return [line.split()[1:] for line in readme_blocks()["bash"].strip().splitlines()]


def test_the_walk_through_validates_with_its_mapping(converted: Path, capsys):
    validate = readme_commands()[0]
    assert validate[-1] == "validate"
    assert cli.main(validate) == 0
    out = capsys.readouterr().out
    assert "input gate passed" in out
    # The warnings the README explains: no shares; the short test window is widened.
    assert "every one of" in out and "shared = 0" in out
    assert "the evaluation tests on the last" in out


def test_without_the_mapping_the_gate_names_the_column_and_the_mapping(converted: Path, capsys):
    config = (converted / "movies.yaml").read_text()
    unmapped = re.sub(r"      events: \{.*\}\n", "", config)
    assert unmapped != config
    (converted / "unmapped.yaml").write_text(unmapped)
    assert cli.main(["--config", "unmapped.yaml", "validate"]) == cli.EXIT_GATE
    err = capsys.readouterr().err
    assert "events.ts: column is present" in err
    assert "the file has userId, movieId, timestamp" in err
    assert "datasets.movies.columns: {events: {ts: timestamp}}" in err
    assert "datasets.movies.columns: {events: {user_id: userId}}" in err
    assert f"events: {converted / 'events.csv'}" in err
    assert "needed to derive" not in err


@pytest.mark.slow
def test_the_walk_through_runs_to_a_served_list(converted: Path, capsys):
    """validate, main and related as the README has them; `related` without --config reads
    the configuration `main --config` left in the workspace."""
    small = [item for override in SMALL_MODELS for item in ("--set", override)]
    for command in readme_commands():
        if command[-1] == "main":  # the README's, with the suite's small networks
            command = [*command[:-1], *small, "main"]
        assert cli.main(command) == 0, command
    out = capsys.readouterr().out
    assert "promotion: related-videos v1 approved" in out
    assert "related videos of 1 under v1" in out
    assert (converted / "workspace-movies" / "config.yaml").is_file()
    # The log's last 3 days are too few to judge: the evaluation widened its test window.
    summary = converted / "workspace-movies" / "data" / "movies" / "evaluation" / "evaluation.json"
    assert json.loads(summary.read_text())["test_events"] >= 500
