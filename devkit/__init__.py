"""Development and test support that is not part of the service wheel: a local Apache Kafka
(KRaft) launcher, throwaway TLS material, and the chaos run. Used from a source checkout by the
demo, the tests and the benchmarks."""
