"""Flags shared by the commands that build :class:`~worker.config.WorkerSettings`."""

from __future__ import annotations

import argparse
from typing import Any

from worker.config import WorkerSettings, load_settings
from worker.errors import UsageError


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (flags beat BIOMARKER_* variables)")
    group.add_argument("--config", metavar="FILE", help="YAML settings file")
    group.add_argument("--bootstrap-servers", dest="bootstrap_servers")
    group.add_argument("--input-topic", dest="input_topic")
    group.add_argument("--output-topic", dest="output_topic")
    group.add_argument("--dlq-topic", dest="dlq_topic")
    group.add_argument("--group-id", dest="group_id")
    group.add_argument("--model", dest="model_path", help="checkpoint dir or hub id")
    group.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    group.add_argument("--threshold", type=float)
    group.add_argument("--log-level", dest="log_level")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting, e.g. --set token_budget=4096 (repeatable)",
    )


_FLAG_KEYS = (
    "bootstrap_servers",
    "input_topic",
    "output_topic",
    "dlq_topic",
    "group_id",
    "model_path",
    "device",
    "threshold",
    "log_level",
)


def settings_from_args(args: argparse.Namespace, **extra: Any) -> WorkerSettings:
    overrides: dict[str, Any] = {key: getattr(args, key, None) for key in _FLAG_KEYS}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip().lower().replace("-", "_")] = value
    overrides.update(extra)
    return load_settings(overrides=overrides, config_file=args.config)
