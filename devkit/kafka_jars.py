"""The Apache Kafka broker's jars, fetched once from Maven Central and cached.

``org.apache.kafka:kafka_2.13`` and its runtime dependencies are copied with
``mvn dependency:copy-dependencies`` into ``<cache>/kafka-<version>/libs`` (atomically: a
concurrent fetch that loses the race leaves the winner's copy).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from worker.cache import cache_dir

KAFKA_VERSION = os.environ.get("BIOMARKER_KAFKA_VERSION", "4.1.1")
LOG4J_VERSION = "2.24.3"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.biomarker</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


class KafkaStartError(RuntimeError):
    """The local broker could not be fetched or started."""


def kafka_libs(version: str = KAFKA_VERSION) -> Path:
    """Directory of the broker's jars, fetched with Maven on first use (atomic, cached)."""
    target = cache_dir() / f"kafka-{version}-log4j-{LOG4J_VERSION}" / "libs"
    if target.is_dir() and any(target.glob("kafka_2.13-*.jar")):
        return target
    if shutil.which("mvn") is None:
        raise KafkaStartError("Maven (mvn) is needed to fetch the Kafka broker jars")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION), encoding="utf-8")
        staging = Path(tmp) / "libs"
        result = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "--strict-checksums",  # a jar whose checksum does not match fails the fetch
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
            raise KafkaStartError(f"mvn failed to fetch Kafka {version}: {' | '.join(tail)}")
        with contextlib.suppress(OSError):  # a concurrent fetch may have won the race
            staging.rename(target)
    return target
