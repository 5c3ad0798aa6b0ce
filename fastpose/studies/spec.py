"""The sweep file: a base config (the tables of ``--config``) plus a ``[sweep]`` table of axes. Torch-free.

```toml
name = "LS"                         # base run NAME; each cell is NAME plus its axis values
[train]
epochs = 8
[sweep]
id = "loss_study"                   # optional: the sweep's id in the journal (default: the file's stem)
tags = ["paper"]                    # optional: extra tags on every cell (the sweep id is always one)
"loss.name" = ["mse", "qloss"]      # an axis: a dotted config key and a non-empty list of values
"train.seed" = [0, 1, 2]            # seed axes (train.seed, data.seed) do not split groups
[tune]                              # optional: a tuning stage before the seeds (see below)
"loss.rot_weight" = [0.1, 0.3, 1.0] # a list: a tuning axis (its grid)
"train.epochs" = 5                  # a scalar: set on the tuning runs only (e.g. a smaller budget)
[slurm]                             # optional: resources for --launcher slurm (see fastpose.studies.slurm)
partition = "gpu"
```

Every combination of axis values is a cell; its group is its values without the seed axes. ``load_sweep``
checks everything before the caller writes anything, and raises ``ConfigError`` with one line naming the
problem: unknown keys, empty axes, value types, a key that two axes (or two spellings of one key) set, two
cells that would train the same config or carry the same run name, every cell's ``RunConfig.validate()``,
and more cells than ``MAX_CELLS`` (counted before any is built). Lightning's verdict on the trainer settings
needs Lightning; ``fastpose.studies.sweep`` asks it once per sweep.

**Tuning.** With a ``[tune]`` table the sweep runs in two stages. First, for every group, one tuning cell per
combination of the tuning axes, at the first value of each seed axis, validated on the synthetic ``tune``
split (``data.val_split = "tune"``: its own images, see ``fastpose.config.SPLIT_SEED_OFFSET``); its values
carry ``"stage": "tune"``. Then each group's tuning values are chosen by the best value of the primary metric
(``train.monitor``) its tuning runs reached (``choose``), and the group's seed cells run with them,
validated on ``val``: the split the final table is scored on chose nothing. The chosen values are part of
the final cells' values, so they show in run names, groups and ``compare --sweep``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastpose.config import NAME_PATTERN, ConfigError, RunConfig, load_toml, validate_name

CONFIG_TABLES = ("data", "model", "loss", "train")
SWEEP_SETTINGS = ("id", "tags")
STAGE_KEY = "stage"  # in a tuning cell's values: {"stage": "tune"}; final cells have no such key
# The most cells one sweep file may plan (every final cell at every tuning value, plus the tuning cells):
# 10,000 take 5.7 s to build and check (2-core machine at load 8); a file that multiplies out to millions is
# a mistake that would otherwise hang before printing anything.
MAX_CELLS = 10_000
CELL_KEY_MAX = 1000  # characters: sweep_runs.cell and sweep_claims.cell (VARCHAR on PostgreSQL)
# [slurm] keys and the types they take; anything else is an error (``additional`` holds raw sbatch options).
SLURM_KEYS: dict[str, tuple[type, ...]] = {
    "partition": (str,),
    "nodes": (int,),
    "gpus_per_node": (int,),
    "tasks_per_node": (int,),
    "cpus_per_task": (int,),
    "mem_gb": (int, float),
    "time": (int,),  # minutes
    "account": (str,),
    "qos": (str,),
    "constraint": (str,),
    "array_parallelism": (int,),
    "setup": (list,),  # shell lines run before each job (module load ..., source venv)
    "additional": (dict,),  # extra sbatch options, e.g. {"mail-type" = "END"}
}


@dataclass(frozen=True)
class Cell:
    """One combination of axis values and the run config it trains."""

    values: dict[str, Any]  # axis -> value, in the file's axis order
    config: RunConfig

    @property
    def key(self) -> str:
        from fastpose.journal.sweeps import cell_key

        return cell_key(self.values)

    @property
    def group(self) -> str:
        from fastpose.journal.sweeps import group_key

        return group_key(self.values)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class SweepSpec:
    id: str  # the sweep's id in the journal
    name: str  # base run NAME
    base: dict[str, Any]  # the config tables, as in the file (no name)
    axes: dict[str, list[Any]]
    tags: tuple[str, ...] = ()
    slurm: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    tune_axes: dict[str, list[Any]] = field(default_factory=dict)  # [tune] lists: the tuning grid
    tune_set: dict[str, Any] = field(default_factory=dict)  # [tune] scalars: set on tuning runs only

    def cell(self, values: dict[str, Any]) -> Cell:
        """The cell of ``values`` (a tuning cell when they hold ``"stage": "tune"``)."""
        base = RunConfig.from_dict({"name": self.name, **self.base})
        overrides = {k: v for k, v in values.items() if k != STAGE_KEY}
        if values.get(STAGE_KEY) == "tune":
            overrides.update(self.tune_set)
            overrides["data.val_split"] = "tune"
        return Cell(values, base.override({**overrides, "name": cell_name(self.name, values)}))

    def combos(self, axes: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
        """Every combination of ``axes`` (default: the sweep's) as cell values, in the file's order; a
        variant axis (a list of tables) contributes its table's keys, not its own name."""
        axes = self.axes if axes is None else axes
        out = []
        for combo in itertools.product(*axes.values()):
            values: dict[str, Any] = {}
            for axis, value in zip(axes, combo):
                values.update(_flatten(value) if isinstance(value, dict) else {axis: value})
            out.append(values)
        return out

    def group_order(self) -> list[str]:
        """The group keys of the final cells (tuning values left out), in the file's order."""
        from fastpose.journal.sweeps import group_key

        return list(dict.fromkeys(group_key(v) for v in self.combos()))

    def cells(self, chosen: dict[str, dict[str, Any]] | None = None) -> list[Cell]:
        """The final cells. A tuned sweep needs ``chosen`` (group key -> tuning values, from ``choose``); a
        group without a choice has no final cells yet."""
        from fastpose.journal.sweeps import group_key

        out = []
        for values in self.combos():
            if self.tune_axes:
                pick = (chosen or {}).get(group_key(values))
                if pick is None:
                    continue
                values = {**values, **pick}
            out.append(self.cell(values))
        return out

    def tuning_cells(self) -> list[Cell]:
        """Per group, one cell per combination of the tuning axes, at the first value of each seed axis."""
        from fastpose.journal.sweeps import SEED_KEYS

        groups = {k: v for k, v in self.axes.items() if k not in SEED_KEYS}
        seeds = {k: v[0] for k, v in self.axes.items() if k in SEED_KEYS}
        out = []
        for group in self.combos(groups):
            for tune in self.combos(self.tune_axes):
                out.append(self.cell({**group, STAGE_KEY: "tune", **tune, **seeds}))
        return out

    def to_json(self) -> dict[str, Any]:
        """What the journal keeps of the sweep (``--resume SWEEP`` rebuilds the spec from it)."""
        out = {"name": self.name, "base": self.base, "axes": self.axes, "tags": list(self.tags), "slurm": self.slurm}
        if self.tune_axes:
            out["tune"] = {"axes": self.tune_axes, "set": self.tune_set}
        return out

    @classmethod
    def from_json(cls, sweep_id: str, data: dict[str, Any], source: str | None = None) -> SweepSpec:
        tune = data.get("tune") or {}
        return cls(sweep_id, data["name"], data.get("base") or {}, data["axes"], tuple(data.get("tags") or ()),
                   data.get("slurm") or {}, source, tune.get("axes") or {}, tune.get("set") or {})


# ----------------------------------------------------------------------------- loading
def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file; every problem is one ConfigError line, and nothing is written."""
    path = Path(path)
    data = load_toml(path, what="sweep file")
    where = f"sweep file {path.name}"
    unknown = [k for k in data if k not in ("name", "sweep", "tune", "slurm", *CONFIG_TABLES)]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; a sweep file has name, [data], [model], [loss], "
                          "[train], [sweep], [tune] and [slurm]")
    sweep = data.get("sweep")
    if not isinstance(sweep, dict):
        raise ConfigError(f"{where}: no [sweep] table; add one with at least one axis, e.g. \"train.seed\" = [0, 1, 2]")
    name = data.get("name")
    if name is None:
        raise ConfigError(f'{where}: the base config needs a run NAME: name = "..." at the top of the file')
    validate_name(name)
    base = {k: v for k, v in data.items() if k in CONFIG_TABLES}
    try:
        RunConfig.from_dict(base)  # unknown sections or keys, value types
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None

    sweep_id = sweep.get("id", _default_id(path))
    if not isinstance(sweep_id, str) or not NAME_PATTERN.fullmatch(sweep_id):
        raise ConfigError(f"{where}: [sweep] id {sweep_id!r} must be 1-100 characters from A-Z a-z 0-9 _ . -")
    tags = sweep.get("tags", [])
    if not isinstance(tags, list):
        raise ConfigError(f"{where}: [sweep] tags must be a list of strings, got {tags!r}")
    from fastpose.journal.tags import validate_tag

    try:
        tags = [validate_tag(t) for t in tags]
    except Exception as exc:  # FastposeError -> ConfigError with the file named
        raise ConfigError(f"{where}: {exc}") from None

    axes = _axes({k: v for k, v in sweep.items() if k not in SWEEP_SETTINGS}, where)
    slurm = _slurm(data.get("slurm", {}), where)
    tune_axes, tune_set = _tune(data.get("tune"), axes, base, where)
    spec = SweepSpec(sweep_id, name, base, axes, tuple(tags), slurm, str(path.resolve()), tune_axes, tune_set)
    check_cells(spec, where)
    return spec


def check_cells(spec: SweepSpec, where: str) -> list[Cell]:
    """Every cell the sweep may run (``every_cell``), checked as ``train`` checks a config, and against each
    other: no two train the same config or carry the same run name (which names its config file and log).
    Refuses more than ``MAX_CELLS`` before building any. Returns the cells."""
    count = planned_cells(spec)
    if count > MAX_CELLS:
        sizes = " x ".join(str(len(v)) for v in [*spec.axes.values(), *spec.tune_axes.values()])
        raise ConfigError(f"{where}: {count:,} cells to plan ({sizes}), more than the {MAX_CELLS:,} one sweep "
                          "takes; split the file into smaller sweeps")
    cells = every_cell(spec)
    configs: dict[str, Cell] = {}
    names: dict[str, Cell] = {}
    for cell in cells:
        what = f"{where}: cell {describe_values(cell.values)}"
        try:
            cell.config.validate()
        except ConfigError as exc:
            raise ConfigError(f"{what}: {exc}") from None
        if len(cell.key) > CELL_KEY_MAX:
            raise ConfigError(f"{what}: its axis values take {len(cell.key)} characters as JSON, more than the "
                              f"{CELL_KEY_MAX} the journal keeps; use shorter values")
        text = json.dumps({k: v for k, v in cell.config.to_dict().items() if k != "name"}, sort_keys=True)
        for seen, key, problem in ((configs, text, "trains the same config as"),
                                   (names, cell.name, f"gets the same run name ({cell.name}) as")):
            other = seen.setdefault(key, cell)
            if other is not cell:
                raise ConfigError(f"{what} {problem} cell {describe_values(other.values)}; "
                                  "give each cell values of its own")
    return cells


def planned_cells(spec: SweepSpec) -> int:
    """How many cells ``every_cell`` builds, counted from the axis lengths alone."""
    from fastpose.journal.sweeps import SEED_KEYS

    final = groups = tune = 1
    for key, values in spec.axes.items():
        final *= len(values)
        groups *= 1 if key in SEED_KEYS else len(values)
    for values in spec.tune_axes.values():
        tune *= len(values)
    return final * tune + (groups * tune if spec.tune_axes else 0)


def every_cell(spec: SweepSpec) -> list[Cell]:
    """The tuning cells and the final cells at every tuning value the sweep may choose: what is checked."""
    return [*(spec.tuning_cells() if spec.tune_axes else []), *_every_final_cell(spec)]


def _default_id(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip("_.-") or "sweep"


def _flatten(table: dict[str, Any], prefix: str = "", *, where: str = "", into: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """``{"loss": {"name": x}}`` -> ``{"loss.name": x}``. A key spelled twice (``"loss.name"`` quoted, and
    ``loss.name`` as a table or dotted key: TOML reads them as two keys) is a ConfigError, also against the
    keys already in ``into``: one of the two would be dropped without a word."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            found = _flatten(value, f"{prefix}{key}.", where=where, into={**(into or {}), **out})
        else:
            found = {f"{prefix}{key}": value}
        for flat in found:
            if flat in out or (into is not None and flat in into):
                raise ConfigError(f"{where}: {flat} is set twice (as \"{flat}\" and as a table or dotted key); "
                                  "TOML reads these as two keys, and one would be dropped; keep one")
        out.update(found)
    return out


def _one_axis_per_key(axes: dict[str, list[Any]], where: str) -> None:
    """No config key set by two axes (an axis and a variant axis, or two variant axes): each cell would take
    one value and drop the other, and cells would repeat."""
    setters: dict[str, str] = {}
    for axis, values in axes.items():
        keys = {k for table in values for k in _flatten(table, where=where)} if _is_variants(values) else {axis}
        for key in sorted(keys):
            other = setters.setdefault(key, axis)
            if other != axis:
                raise ConfigError(f"{where}: axes {other!r} and {axis!r} both set {key}; every cell would take one "
                                  "value and drop the other; put its values in one axis")


def _axes(table: dict[str, Any], where: str) -> dict[str, list[Any]]:
    known = set(RunConfig().flat()) - {"name"}
    axes: dict[str, Any] = {}
    for key, value in table.items():  # the file's order: it orders cells and names
        axes.update({key: value} if _is_variants(value) else _flatten({key: value}, where=where, into=axes))
    if not axes:
        raise ConfigError(f'{where}: [sweep] has no axis; add one, e.g. "train.seed" = [0, 1, 2]')
    _one_axis_per_key(axes, where)
    for key, values in axes.items():
        if isinstance(values, list) and values and all(isinstance(v, dict) for v in values):
            _variants(key, values, known, where)
            continue
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}" if close else "; axes are config keys like loss.name"
            raise ConfigError(f"{where}: [sweep] unknown key {key!r}{hint}")
        if not isinstance(values, list):
            raise ConfigError(f"{where}: axis {key!r} must be a list of values, got {values!r}")
        if not values:
            raise ConfigError(f"{where}: axis {key!r} is empty; give it at least one value")
        for value in values:
            check_type(key, value, where)
        if len({json.dumps(v) for v in values}) != len(values):
            raise ConfigError(f"{where}: axis {key!r} repeats a value: {values!r}")
    return axes


def _every_final_cell(spec: SweepSpec) -> list[Cell]:
    """The final cells at every tuning value the sweep may choose (all of them are checked up front)."""
    if not spec.tune_axes:
        return spec.cells()
    from fastpose.journal.sweeps import group_key

    groups = {group_key(v) for v in spec.combos()}
    out = []
    for pick in spec.combos(spec.tune_axes):
        out += spec.cells({g: pick for g in groups})
    return out


def _tune(table: Any, axes: dict[str, list[Any]], base: dict[str, Any], where: str) -> tuple[dict, dict]:
    """The [tune] table: (tuning axes, scalars set on tuning runs). Empty without one."""
    if table is None:
        return {}, {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [tune] must be a table")
    flat = _flatten(table, where=f"{where} [tune]")
    grid = {k: v for k, v in flat.items() if isinstance(v, list)}
    if not grid:
        raise ConfigError(f'{where}: [tune] has no tuning axis; add a list, e.g. "loss.rot_weight" = [0.1, 0.3, 1.0]')
    grid = _axes(grid, f"{where} [tune]")
    scalars = {k: v for k, v in flat.items() if not isinstance(v, list)}
    known = set(RunConfig().flat()) - {"name"}
    from fastpose.journal.sweeps import SEED_KEYS

    for key, value in scalars.items():
        if key not in known:
            raise ConfigError(f"{where}: [tune] unknown key {key!r}; keys are config keys like train.epochs")
        check_type(key, value, f"{where} [tune]")
    swept = {k for values in ([dict.fromkeys(axes)] + [_flatten(v) for a in axes.values() for v in a
                                                         if isinstance(v, dict)]) for k in values}
    for key in [*grid, *scalars]:
        if key in swept:
            raise ConfigError(f"{where}: {key!r} is both a [sweep] axis and a [tune] key; keep it in one of them")
        if key in SEED_KEYS and key in grid:
            raise ConfigError(f"{where}: [tune] cannot tune a seed ({key}); seeds are [sweep] axes")
        if key == "data.val_split":
            raise ConfigError(f"{where}: [tune] sets data.val_split itself (tuning runs validate on 'tune')")
    if base.get("data", {}).get("dataset", "synthetic") != "synthetic":
        raise ConfigError(f"{where}: [tune] needs the synthetic dataset (its tune split); NOCS has none")
    return grid, scalars


def _is_variants(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _variants(axis: str, values: list[dict[str, Any]], known: set[str], where: str) -> None:
    """A variant axis: ``arm = [{"loss.name" = "mse"}, {"loss.name" = "geodesic", "model.rotation" = "6d"}]``:
    each table is a set of config values that go together (combinations that are not a product)."""
    if axis in known:
        raise ConfigError(f"{where}: axis {axis!r} is a config key; its values must be values, not tables")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", axis):
        raise ConfigError(f"{where}: variant axis {axis!r}: name it with a-z, 0-9 and _ (e.g. arm)")
    seen = set()
    for table in values:
        flat = _flatten(table, where=f"{where}: variant axis {axis!r}")
        if not flat:
            raise ConfigError(f"{where}: variant axis {axis!r} has an empty table")
        for key, value in flat.items():
            if key not in known:
                raise ConfigError(f"{where}: variant axis {axis!r}: unknown key {key!r}; keys are config keys like loss.name")
            if key in ("train.seed", "data.seed"):
                raise ConfigError(f"{where}: variant axis {axis!r} sets a seed ({key}); seeds are axes of their own")
            check_type(key, value, where)
        text = json.dumps(flat, sort_keys=True)
        if text in seen:
            raise ConfigError(f"{where}: variant axis {axis!r} repeats a table: {flat}")
        seen.add(text)


def _slurm(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [slurm] must be a table")
    for key, value in table.items():
        if key not in SLURM_KEYS:
            raise ConfigError(f"{where}: [slurm] unknown key {key!r}; known: {', '.join(SLURM_KEYS)}")
        types = SLURM_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ConfigError(f"{where}: [slurm] {key} must be {' or '.join(t.__name__ for t in types)}, got {value!r}")
        if isinstance(value, (int, float)) and value <= 0:
            raise ConfigError(f"{where}: [slurm] {key} must be > 0, got {value!r}")
    return dict(table)


# The type of every config field, from the dataclasses' annotations (strings under `from __future__`).
def _field_types() -> dict[str, str]:
    out = {}
    for section in dataclasses.fields(RunConfig):
        if section.name == "name":
            continue
        for f in dataclasses.fields(section.default_factory()):  # type: ignore[misc]
            out[f"{section.name}.{f.name}"] = str(f.type)
    return out


def check_type(key: str, value: Any, where: str) -> None:
    """ConfigError (naming the file) unless ``value`` fits config field ``key``: ``fastpose.config.check_type``."""
    from fastpose.config import check_type as config_check_type

    annotation = _field_types().get(key)
    if annotation is None:
        return  # unknown keys are reported by _axes
    try:
        config_check_type(key, value, annotation)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


# ----------------------------------------------------------------------------- names and cells
def describe_values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "all"


def cell_name(base: str, values: dict[str, Any]) -> str:
    """``NAME-mse-seed0``: NAME, then each axis value (numbers after their key's last part)."""
    parts = []
    for key, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not isinstance(value, str):
            text = key.rsplit(".", 1)[-1] + text
        parts.append(re.sub(r"[^A-Za-z0-9_.]+", "_", text))
    name = "-".join([base, *parts])
    if len(name) > 100:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:91]}-{digest}"
    return validate_name(name)


def parse_sweep_cell(text: str) -> dict[str, Any]:
    """``train --sweep-cell``'s JSON ``{"sweep": <row id>, "cell": {axis: value}}`` (set by fastpose sweep)."""
    try:
        data = json.loads(text)
        ok = isinstance(data, dict) and isinstance(data.get("sweep"), int) and isinstance(data.get("cell"), dict)
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError('--sweep-cell takes {"sweep": ID, "cell": {...}} (it is set by fastpose sweep)')
    return data


def cell_toml(config: RunConfig) -> str:
    """The cell's config as a TOML file for ``fastpose train --config`` (scalars only: what RunConfig holds)."""
    lines = [f"name = {_toml(config.name)}"]
    for section, values in config.to_dict().items():
        if not isinstance(values, dict):
            continue
        lines += ["", f"[{section}]"]
        lines += [f"{k} = {_toml(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string
