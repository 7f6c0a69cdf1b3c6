"""A first table that promotion refuses: `main` publishes nothing and says why, with the gate's
exit code, instead of failing later at publish with "nothing to publish"."""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines import main as chain
from pipelines.gate_report import FirstTableRefused
from pipelines.promote import Decision


@pytest.fixture
def refused(monkeypatch, tmp_path):
    from pipelines.config import load_config

    config = load_config(
        overrides=[f"paths.workspace={tmp_path}", f"mlflow.tracking_uri=sqlite:///{tmp_path}/m.db"]
    )
    decision = Decision("1", None, False, ["too small to judge: 36 test events"], pd.DataFrame())
    published = []
    monkeypatch.setattr(chain, "run_steps", lambda config, steps, force: ({}, []))
    monkeypatch.setattr(chain, "run_promote", lambda config: decision)
    monkeypatch.setattr(chain, "run_publish", lambda config: published.append(True))
    return config, published


def test_main_publishes_nothing_and_names_the_reasons(refused):
    config, published = refused
    with pytest.raises(FirstTableRefused) as raised:
        chain.run_main(config)
    assert not published
    message = str(raised.value)
    assert "v1" in message and "too small to judge: 36 test events" in message
    assert "publish --version 1" in message


def test_the_cli_exits_with_the_gate_code(refused, monkeypatch, capsys):
    from pipelines import cli

    config, published = refused
    monkeypatch.setattr(cli, "load_config", lambda *args, **kwargs: config)
    assert cli.main(["main"]) == cli.EXIT_GATE
    assert "promotion refused related-videos v1" in capsys.readouterr().err
    assert not published
