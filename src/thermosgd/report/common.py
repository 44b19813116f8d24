"""Small helpers shared by the report's readers: names of metrics and symbols, tolerant JSON and numbers."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

from thermosgd import fmt, presets
from thermosgd.report.catalogue import preset_of

__all__ = [
    "SYMBOL",
    "EXPONENT",
    "PAPER_EXPONENT",
    "METRIC",
    "read_json",
    "json_problem",
    "number",
    "seed_count",
    "pm_sig",
    "settings_rows",
    "pretty_json",
    "preset_metric",
    "exponent_label",
    "figure_label",
]

SYMBOL = {"lr": "η", "batch_size": "|B|"}
EXPONENT = presets.EXPONENT_SYMBOL
PAPER_EXPONENT = presets.PAPER_EXPONENT
METRIC = {
    "activation_rate": "activation rate",
    "v_norm": "‖V‖",
    "bias_mean": "mean b",
    "loss": "loss",
    "grad_var": "gradient variance",
    "error": "error",
    "w_norm": "‖W‖",
}


#: A results JSON larger than this is not one of ours (ours are kilobytes).
MAX_JSON_BYTES = 64 * 2**20


def json_problem(path: Path) -> tuple[dict | None, str]:
    """``(the file's JSON object, "")``, or ``(None, why)`` ("" when the file is simply absent).

    Opens only regular files without following a symlink at the last component or
    blocking on a FIFO, reads at most :data:`MAX_JSON_BYTES`, and refuses JSON that is
    not an object or nests too deeply to parse.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, f"{path.name} cannot be opened ({exc.strerror or type(exc).__name__})"
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, f"{path.name} is not a regular file"
        if info.st_size > MAX_JSON_BYTES:
            return None, f"{path.name} is larger than {MAX_JSON_BYTES // 2**20} MiB"
        raw = f.read(MAX_JSON_BYTES + 1)
    try:
        data = json.loads(raw)
    except RecursionError:
        return None, f"{path.name} nests too deeply"
    except ValueError:
        return None, f"{path.name} is not JSON"
    if not isinstance(data, dict):
        return None, f"{path.name} holds a JSON {type(data).__name__}, not an object"
    return data, ""


def read_json(path: Path) -> dict | None:
    """The file's JSON object, or None when it is missing, unreadable, not JSON or not an object."""
    return json_problem(path)[0]


def number(x) -> float | None:
    """``x`` as a finite float, or None (missing, NaN, text)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def seed_count(seeds) -> int | None:
    """The number of seeds in a config (a list of seeds or a count)."""
    if isinstance(seeds, list):
        return len(seeds)
    return seeds if isinstance(seeds, int) else None


def pm_sig(row: dict, key: str) -> str:
    """``row[key] ± row[key + '_se']`` with 4 and 2 significant digits."""
    v, se = row.get(key), row.get(key + "_se")
    return f"{fmt.sig(v, 4)} ± {fmt.sig(se, 2)}" if number(se) is not None else fmt.sig(v, 4)


def settings_rows(settings: dict) -> list[tuple[str, str]]:
    """An experiment's settings dict as (name, value) rows for "what was run"."""
    rows = []
    for k, v in settings.items():
        if isinstance(v, list):
            v = ", ".join(fmt.sig(x) if isinstance(x, float) else str(x) for x in v)
        elif isinstance(v, float):
            v = fmt.sig(v)
        rows.append((k.replace("_", " "), str(v)))
    return rows


def pretty_json(obj) -> str:
    """Indented JSON for the provenance block ("" for an empty object)."""
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str) if obj else ""


def preset_metric(name: str) -> str | None:
    """The metric a preset fits (``Preset.metric``), or None when it fits no exponent."""
    p = preset_of(name)
    return p.metric if p is not None and p.over else None


def exponent_label(metric: str, over: str, figure: str | None) -> str:
    """e.g. "activation rate: η exponent α (Fig. 3)"."""
    label = f"{METRIC.get(metric, metric)}: {SYMBOL.get(over, over)} exponent {EXPONENT.get(over, '')}".rstrip()
    return f"{label} ({figure_label(figure)})" if figure else label


def figure_label(name: str) -> str:
    """ "fig3" -> "Fig. 3", "fig2-top" -> "Fig. 2 top"."""
    if name.startswith("fig2-"):
        return f"Fig. 2 {name[5:]}"
    return f"Fig. {name[3:]}" if name.startswith("fig") else name
