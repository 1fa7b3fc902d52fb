"""Add the biomarker classifier to an existing faust app.

Start a local broker (``python -m devkit.localkafka run`` prints its address), create the
topics, then::

    BIOMARKER_BOOTSTRAP_SERVERS=127.0.0.1:PORT python examples/faust_app.py worker -l warning

The classifier reads ``BIOMARKER_INPUT_TOPIC`` and writes ``BIOMARKER_OUTPUT_TOPIC`` and
``BIOMARKER_DLQ_TOPIC`` with every setting of ``WorkerSettings`` (environment, ``--config``).
Offsets of its input topics are committed by the agent, only after delivery (docs/FAUST.md).
"""

from __future__ import annotations

from worker.config import load_settings
from worker.faust_runtime.agent import add_classifier_agent, app_settings
from worker.faust_runtime.producer import IdempotentApp
from worker.logs import configure_logging

settings = load_settings(overrides={"runtime": "faust"})
configure_logging(settings.log_level)

# The team's own app: the settings the classifier needs are pinned by app_settings().
# IdempotentApp is a faust.App whose producer is idempotent (a plain faust.App works too, but a
# send that aiokafka retries may then write an output twice).
app = IdempotentApp(settings.group_id, **app_settings(settings))

classifier = add_classifier_agent(app, settings)  # model=None: the configured model


@app.timer(interval=30.0)
async def still_alive() -> None:
    """The team's own agents and timers keep working alongside the classifier."""


if __name__ == "__main__":
    app.main()
