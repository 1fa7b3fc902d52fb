"""Where settings come from: environment variables (prefix ``BIOMARKER_``), an optional YAML
file, flags, and ``BIOMARKER_<NAME>_FILE`` files; every problem found, with its source.

Precedence, highest first: command-line flags, environment variables, the YAML file
(``BIOMARKER_CONFIG_FILE`` or ``--config``), defaults. :func:`load_settings` is strict: an unknown
key, a bad value, an inconsistent security setup or a missing file is an error, and every error
is reported at once, one line each naming the key and where it came from (exit 2).
docs/CONFIGURATION.md has the rules.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, get_args

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import EnvSettingsSource

from worker.config.settings import (
    CHECK_FILES,
    ENV_PREFIX,
    InconsistentSettings,
    WorkerSettings,
)
from worker.errors import ConfigError

#: ``BIOMARKER_<NAME>_FILE=/path``: the content of /path (trailing newline stripped) is <NAME>.
FILE_SUFFIX = "_FILE"

#: ``BIOMARKER_*`` variables that are not worker settings, with what reads them. Any other
#: ``BIOMARKER_*`` variable that is neither a setting nor a setting's ``_FILE`` is an error.
NOT_SETTINGS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "BIOMARKER_CONFIG_FILE": "the YAML settings file (same as --config)",
        "BIOMARKER_CACHE_DIR": "the model cache directory (worker/cache.py; the image sets it)",
        "BIOMARKER_DATA_DIR": "the training corpora (dataset, training, demo notes)",
        "BIOMARKER_TOOLS_DIR": "the chart tools cache (scripts/check_chart.sh, chart tests)",
        "BIOMARKER_KUBERNETES_VERSIONS": "the schemas the chart is validated against (scripts/)",
        "BIOMARKER_KAFKA_VERSION": "the Apache Kafka release of the local broker (devkit/)",
        "BIOMARKER_EHR_SAMPLES": "the EHR sample messages of the tests",
        "BIOMARKER_SETUP_FORCE": "scripts/setup.sh: 1 reinstalls the locked dependencies",
    }
)


@dataclass(frozen=True)
class _Given:
    """A value for a setting and where it came from (``env BIOMARKER_X``, ``file p:k``...)."""

    value: Any
    source: str


def load_settings(
    *,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    flags: Mapping[str, str] | None = None,
    check_files: bool = True,
) -> WorkerSettings:
    """Build validated settings from the file, the environment and ``overrides``.

    ``flags`` names the command-line flag of each override (for the messages). With
    ``check_files`` the files and directories the settings name must exist. Every problem
    is collected and raised at once as a :class:`~worker.errors.ConfigError`.
    """
    problems: list[str] = []
    file_path = config_file or os.environ.get(f"{ENV_PREFIX}CONFIG_FILE")
    given = _from_file(str(file_path), problems) if file_path else {}
    decoder = EnvSettingsSource(WorkerSettings)  # pydantic-settings' decoding of variables
    given.update(_from_env(decoder, problems))
    given.update(_from_overrides(decoder, overrides or {}, flags or {}, problems))
    settings = _validated(given, problems, check_files)
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def _from_file(path: str, problems: list[str]) -> dict[str, _Given]:
    """The settings of a YAML file; unknown keys and unreadable files go to ``problems``."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append(f"file {path}: cannot read the config file: {exc.strerror}")
        return {}
    except UnicodeDecodeError:
        problems.append(f"file {path}: the config file is not UTF-8 text")
        return {}
    except yaml.YAMLError as exc:
        problems.append(f"file {path}: the config file is not valid YAML{_yaml_where(exc)}")
        return {}
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        problems.append(f"file {path}: the config file must hold a mapping of settings")
        return {}
    given: dict[str, _Given] = {}
    for key, value in loaded.items():
        name = str(key).lower().replace("-", "_")
        if name in WorkerSettings.model_fields:
            given[name] = _Given(value, f"file {path}:{key}")
        else:
            problems.append(f"file {path}:{key}: unknown setting{_suggest(name)}")
    return given


def _yaml_where(exc: yaml.YAMLError) -> str:
    """Where and why a YAML file failed, without quoting its content (it may hold secrets)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f" ({exc.problem}, line {mark.line + 1} column {mark.column + 1})"
    return ""


def _from_env(decoder: EnvSettingsSource, problems: list[str]) -> dict[str, _Given]:
    """The ``BIOMARKER_*`` settings of the environment, ``*_FILE`` variables read."""
    fields = WorkerSettings.model_fields
    direct: dict[str, str] = {}
    from_files: dict[str, str] = {}
    for variable in sorted(os.environ):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NOT_SETTINGS:
            continue
        name = upper.removeprefix(ENV_PREFIX).lower()
        stem = name.removesuffix(FILE_SUFFIX.lower())
        if name in fields:
            direct[name] = variable
        elif stem != name and stem in fields:
            from_files[stem] = variable
        else:
            problems.append(f"env {variable}: unknown setting{_suggest_variable(name)}")
    given: dict[str, _Given] = {}
    for name, variable in direct.items():
        if name in from_files:
            problems.append(
                f"env {from_files.pop(name)}: {name} is also set by {variable}; set one of them"
            )
        item = _decoded(decoder, name, os.environ[variable], f"env {variable}", problems)
        if item is not None:
            given[name] = item
    for name, variable in from_files.items():
        content = _read_value_file(variable, problems)
        if content is not None:
            item = _decoded(decoder, name, content, f"env {variable}", problems)
            if item is not None:
                given[name] = item
    return given


def _from_overrides(
    decoder: EnvSettingsSource,
    overrides: Mapping[str, Any],
    flags: Mapping[str, str],
    problems: list[str],
) -> dict[str, _Given]:
    """The settings given in code or by flags (``None``: not given)."""
    given: dict[str, _Given] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        name = key.lower().replace("-", "_")
        source = f"flag {flags[key]}" if key in flags else f"override {key}"
        if name not in WorkerSettings.model_fields:
            problems.append(f"{source}: unknown setting{_suggest(name)}")
        elif (item := _decoded(decoder, name, value, source, problems)) is not None:
            given[name] = item
    return given


def _read_value_file(variable: str, problems: list[str]) -> str | None:
    """The content of the file a ``*_FILE`` variable names, trailing newline stripped."""
    path = os.environ[variable]
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        problems.append(f"env {variable}: cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        problems.append(f"env {variable}: {path} is not UTF-8 text")
    return None


def _decoded(
    decoder: EnvSettingsSource, name: str, value: Any, source: str, problems: list[str]
) -> _Given | None:
    """``value`` as pydantic-settings decodes a variable (JSON for dicts, lists and models).
    An empty value of a setting that may be unset unsets it (``BIOMARKER_METRICS_PORT=`` turns
    off a port an image or file set)."""
    if not isinstance(value, str):
        return _Given(value, source)
    if not value.strip() and _may_be_unset(name):
        return _Given(None, source)
    try:
        decoded = decoder.prepare_field_value(name, WorkerSettings.model_fields[name], value, False)
    except ValueError as exc:  # json.JSONDecodeError: its message quotes no content
        problems.append(f"{source}: {name} is not valid JSON ({exc})")
        return None
    return _Given(decoded, source)


def _may_be_unset(name: str) -> bool:
    """Whether setting ``name`` admits ``None`` (``X | None``)."""
    annotation = WorkerSettings.model_fields[name].annotation
    return annotation is not None and type(None) in get_args(annotation)


def _validated(
    given: dict[str, _Given], problems: list[str], check_files: bool
) -> WorkerSettings | None:
    """The settings of ``given``, or ``None`` with every validation problem in ``problems``."""
    token = CHECK_FILES.set(check_files)
    try:
        return WorkerSettings(**{name: item.value for name, item in given.items()})
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            problems.extend(_error_lines(error, given))
        return None
    finally:
        CHECK_FILES.reset(token)


def _error_lines(error: ErrorDetails, given: dict[str, _Given]) -> Iterator[str]:
    """One line per problem of a pydantic error; the value itself is never quoted."""
    reason = error.get("ctx", {}).get("error")
    if isinstance(reason, InconsistentSettings):
        for name, rule in reason.problems:
            yield f"{_source(name, given)}: {rule}"
        return
    loc = error["loc"]
    name = str(loc[0]) if loc else "settings"
    path = name + "".join(
        f".{part}" if isinstance(part, str) and part.isidentifier() else f"[{part!r}]"
        for part in loc[1:]
    )
    message = str(reason) if isinstance(reason, Exception) else error["msg"]
    yield f"{_source(name, given)}: {path}: {message}"


def _source(name: str, given: dict[str, _Given]) -> str:
    item = given.get(name)
    return item.source if item is not None else "default"


def _suggest(name: str) -> str:
    """``; did you mean X?`` for the setting closest to an unknown key, or nothing."""
    close = difflib.get_close_matches(name, list(WorkerSettings.model_fields), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _suggest_variable(name: str) -> str:
    """The closest ``BIOMARKER_*`` variable to an unknown one (``name`` without the prefix)."""
    fields = list(WorkerSettings.model_fields)
    known = [
        *fields,
        *(f"{field}{FILE_SUFFIX.lower()}" for field in fields),
        *(variable.removeprefix(ENV_PREFIX).lower() for variable in NOT_SETTINGS),
    ]
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {ENV_PREFIX}{close[0].upper()}?" if close else ""
