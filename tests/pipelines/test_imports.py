"""What the command line loads before a step runs: Great Expectations (seconds to import) only
when a gate runs, not when the chain reuses the validate step and no gate runs."""

from __future__ import annotations

import subprocess
import sys

# Everything `related-videos main` imports before the chain starts (pipelines/cli.py imports
# the steps in `_run`), and the two gate modules themselves.
MODULES = "pipelines.cli, pipelines.main, pipelines.gates, pipelines.related_gate"


def test_the_command_line_and_the_chain_import_no_great_expectations():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, {MODULES}; print('great_expectations' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", done.stderr
