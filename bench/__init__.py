"""The ``bench`` command: model-only limit, end-to-end through Kafka, peers, backends, scaling."""
