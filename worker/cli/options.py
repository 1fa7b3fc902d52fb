"""Flags shared by the commands that build :class:`~worker.config.WorkerSettings`."""

from __future__ import annotations

import argparse
import re
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


#: The flag of each setting that add_settings_options adds (messages name the flag).
_FLAGS = {
    "bootstrap_servers": "--bootstrap-servers",
    "input_topic": "--input-topic",
    "output_topic": "--output-topic",
    "dlq_topic": "--dlq-topic",
    "group_id": "--group-id",
    "model_path": "--model",
    "device": "--device",
    "threshold": "--threshold",
    "log_level": "--log-level",
}
#: Flags of single commands whose values the commands pass to settings_from_args as ``extra``.
_COMMAND_FLAGS = {"input_format": "--format", "input_mapping": "--mapping", "runtime": "--runtime"}


#: The single-input settings, which ``inputs`` replaces when it is set.
_SINGLE_INPUT = ("input_topic", "input_format", "input_mapping")


def settings_from_args(
    args: argparse.Namespace,
    *,
    check_files: bool = True,
    selects_input: bool = False,
    **extra: Any,
) -> WorkerSettings:
    """Settings of the file, the environment, the flags and ``extra`` (settings a command sets;
    ``None``: not set). ``check_files``: see :func:`~worker.config.load_settings`.

    A single-input flag (``--input-topic``, ``--format``, ``--mapping``) where ``inputs`` is set
    (by the file, the environment or ``--set``) is a usage error, not silently outweighed:
    ``inputs`` names the topics and formats. ``selects_input``: ``--input-topic`` picks one of
    ``inputs`` instead (``replay``)."""
    overrides: dict[str, Any] = {key: getattr(args, key, None) for key in _FLAGS}
    flags = dict(_FLAGS)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():  # the item may be a secret: name its key only
            raise UsageError(f"--set expects KEY=VALUE{_key_of(item)}")
        name = key.strip().lower().replace("-", "_")
        overrides[name] = value
        flags[name] = f"--set {key.strip()}"
    for key, value in extra.items():
        if value is not None:
            overrides[key] = value
            flags[key] = {**_FLAGS, **_COMMAND_FLAGS}.get(key, f"--{key.replace('_', '-')}")
    settings = load_settings(
        overrides=overrides, config_file=args.config, flags=flags, check_files=check_files
    )
    if settings.inputs:
        given = [
            flags[key]
            for key in _SINGLE_INPUT
            if overrides.get(key) is not None and not (selects_input and key == "input_topic")
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)} cannot be used while inputs is set (by the config file, "
                "BIOMARKER_INPUTS or --set): inputs names the topics and their formats"
            )
    return settings


def _key_of(item: str) -> str:
    """`` for KEY`` when a malformed ``--set`` item starts with a setting's name (before ``:``
    or a space), else nothing: the rest, or an item without a key, may be a secret value."""
    key = re.split(r"[=:\s]", item.strip(), maxsplit=1)[0]
    name = key.lower().replace("-", "_")
    return f" for {key}" if name in WorkerSettings.model_fields else ""
