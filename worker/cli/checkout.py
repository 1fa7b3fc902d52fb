"""Sub-commands whose code lives only in a source checkout, not in the service wheel.

``train``, ``soup``, ``evaluate`` and ``dataset`` need ``training/``; ``bench`` needs ``bench/`` and
``devkit/``; ``demo`` and ``chaos`` need ``devkit/``. The wheel carries ``worker/`` alone, so
those commands import the checkout's packages lazily inside :func:`checkout_only`, which turns a
missing package or a missing extra into one line (exit 2) instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from worker.errors import UsageError

#: Top-level packages of a source checkout that the wheel leaves out.
CHECKOUT_PACKAGES = frozenset({"bench", "devkit", "training"})


def checkout_message(extra: str | None = None) -> str:
    """What to install: a source checkout, with ``extra`` (``"train"``, ``"bench,onnx"``) if any."""
    if extra is None:
        return "needs a source checkout of biomarker-worker (pip install -e .)"
    noun = "extras" if "," in extra else "extra"
    return (
        f"needs a source checkout of biomarker-worker with the [{extra}] {noun} "
        f"(pip install -e '.[{extra}]')"
    )


@contextmanager
def checkout_only(extra: str | None = None) -> Iterator[None]:
    """Report a checkout package or extra dependency missing in the block as a UsageError.

    A missing ``worker`` module is a broken install, not a missing checkout: it propagates.
    """
    try:
        yield
    except ImportError as exc:
        top = (exc.name or "").partition(".")[0]
        if top in CHECKOUT_PACKAGES:
            raise UsageError(checkout_message(extra)) from None
        if isinstance(exc, ModuleNotFoundError) and top and top != "worker":
            raise UsageError(f"{checkout_message(extra)}: no module named {top!r}") from None
        raise
