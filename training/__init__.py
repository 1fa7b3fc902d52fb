"""Training, evaluation and dataset building for the biomarker sentence classifier.

Imported only by the ``dataset``, ``train``, ``soup`` and ``evaluate`` commands; the worker
itself never needs this package at run time.
"""
