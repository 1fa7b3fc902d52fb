"""Training, evaluation and dataset building for the biomarker sentence classifier.

Imported only by the ``dataset``, ``train``, ``soup`` and ``evaluate`` commands and by
``python -m training.threshold``; the worker itself never needs this package at run time.
"""
