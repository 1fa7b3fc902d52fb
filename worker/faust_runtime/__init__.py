"""The faust-streaming runtime: ``biomarker-worker run --runtime faust`` and an embeddable agent.

``from worker.faust_runtime.agent import add_classifier_agent`` adds the classifier to an
existing ``faust.App`` (see ``examples/faust_app.py`` and docs/FAUST.md). faust is imported
lazily, so the default runtime never loads it; should it be missing, only ``--runtime faust``
fails, with one line.
"""
