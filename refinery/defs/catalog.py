"""What the UI shows about every asset, applied in one place: owners, tags, code references
(local files, or links into a git host), code versions and freshness policies.

Per group (the layer): an owning team, the tags `layer` and `concern`, and for gold and ml a
time-window freshness policy (`FRESHNESS`). dbt models keep the code version dagster-dbt gives
them (the model's checksum); every other asset gets one from the source of the module that
defines it and of the refinery modules that module imports, so editing a transform (or the
contract it imports) marks the asset's materializations as from older code, and nothing else does.

Code references point at the defining Python file and line. With `REFINERY_GIT_URL` set (a
GitHub or GitLab repository URL, `REFINERY_GIT_BRANCH` default `main`, `REFINERY_GIT_PLATFORM`
`github`/`gitlab` when the host name does not say) they become links into that repository;
without it they stay local paths, which the UI shows as the file and line on this machine.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import ModuleType

from dagster import (
    AnchorBasedFilePathMapping,
    AssetsDefinition,
    AssetSpec,
    BetaWarning,
    Definitions,
    FreshnessPolicy,
    PreviewWarning,
    link_code_references_to_git,
    with_source_code_references,
)

from refinery import settings

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "refinery"


@dataclass(frozen=True)
class Ownership:
    owner: str
    concern: str


OWNERSHIP: Mapping[str, Ownership] = {
    "bronze": Ownership("team:data-platform", "ingest"),
    "silver": Ownership("team:data-platform", "ingest"),
    "gold": Ownership("team:analytics-engineering", "gold"),
    "ml": Ownership("team:ml-platform", "ml"),
    "online": Ownership("team:ml-platform", "online"),
}

# Gold and the drift report follow the daily arrivals: one materialization a day, late after a
# day and a half. The training set is rebuilt on drift only: a reference older than a month
# says the drift loop has stopped (or nothing drifted for a month: worth a look either way).
FRESHNESS: Mapping[str, FreshnessPolicy] = {
    "gold": FreshnessPolicy.time_window(
        fail_window=timedelta(hours=36), warn_window=timedelta(hours=26)
    ),
    "ml/feature_drift_report": FreshnessPolicy.time_window(
        fail_window=timedelta(hours=36), warn_window=timedelta(hours=26)
    ),
    "ml/training_dataset": FreshnessPolicy.time_window(
        fail_window=timedelta(days=30), warn_window=timedelta(days=14)
    ),
}


def freshness_for(spec: AssetSpec) -> FreshnessPolicy | None:
    key = spec.key.to_user_string()
    return FRESHNESS.get(key) or FRESHNESS.get(spec.group_name or "")


def _module_files(module: ModuleType) -> set[Path]:
    """The module's own file and those of the refinery modules its globals come from."""
    files: set[Path] = set()
    own = getattr(module, "__file__", None)
    if own:
        files.add(Path(own))
    for value in vars(module).values():
        source = (
            value
            if isinstance(value, ModuleType)
            else sys.modules.get(getattr(value, "__module__", "") or "")
        )
        name = getattr(source, "__name__", "")
        if source is not None and (name == PACKAGE or name.startswith(PACKAGE + ".")):
            path = getattr(source, "__file__", None)
            if path:
                files.add(Path(path))
    return files


def source_code_version(module: ModuleType) -> str:
    """sha256 (first 16 hex) of the module's source and its direct refinery imports."""
    digest = hashlib.sha256()
    for path in sorted(_module_files(module)):
        name = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path.name
        digest.update(str(name).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _defining_module(assets_def: AssetsDefinition) -> ModuleType | None:
    fn = getattr(assets_def.node_def, "compute_fn", None)  # a graph-backed asset has none
    if fn is None:
        return None
    fn = getattr(fn, "decorated_fn", fn)
    return inspect.getmodule(fn)


def with_code_versions(assets: Sequence) -> list:
    """Give every asset without a code version one from its defining module's source."""
    versioned = []
    for assets_def in assets:
        module = _defining_module(assets_def) if isinstance(assets_def, AssetsDefinition) else None
        if module is not None:
            version = source_code_version(module)
            assets_def = assets_def.map_asset_specs(
                lambda spec, v=version: (
                    spec if spec.code_version else spec.replace_attributes(code_version=v)
                )
            )
        versioned.append(assets_def)
    return versioned


def code_referenced(assets: Sequence, environ: Mapping[str, str] | None = None) -> list:
    """Code references on every asset, linked into git when REFINERY_GIT_URL is set."""
    referenced = list(with_source_code_references(list(assets)))
    git_url = settings.GIT_URL.get(environ)
    if not git_url:
        return referenced
    return list(
        link_code_references_to_git(
            referenced,
            git_url=git_url.rstrip("/"),
            git_branch=settings.GIT_BRANCH.get(environ),
            platform=settings.GIT_PLATFORM.get(environ),
            file_path_mapping=AnchorBasedFilePathMapping(
                local_file_anchor=REPO_ROOT / "pyproject.toml",
                file_anchor_path_in_repository="pyproject.toml",
            ),
        )
    )


def catalog_spec(spec: AssetSpec) -> AssetSpec:
    """Owner, tags and freshness policy from the asset's group (its layer)."""
    group = spec.group_name or ""
    ownership = OWNERSHIP.get(group)
    if ownership is None:
        raise ValueError(
            f"{spec.key.to_user_string()}: group {group!r} has no owner in "
            "refinery.defs.catalog.OWNERSHIP; add one"
        )
    spec = spec.merge_attributes(
        owners=[ownership.owner] if ownership.owner not in spec.owners else [],
        tags={"layer": group, "concern": ownership.concern},
    )
    policy = freshness_for(spec)
    if policy is not None:
        spec = spec.replace_attributes(freshness_policy=policy)
    return spec


def apply_catalog(defs: Definitions, environ: Mapping[str, str] | None = None) -> Definitions:
    """The merged code location with code references, code versions, owners, tags, freshness.

    The code-reference helpers are beta and map_asset_specs is preview in Dagster 1.13:
    refinery uses them knowingly, so their warnings are silenced here (and only here).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=BetaWarning)
        warnings.filterwarnings("ignore", category=PreviewWarning)
        return _apply_catalog(defs, environ)


def _apply_catalog(defs: Definitions, environ: Mapping[str, str] | None) -> Definitions:
    assets = code_referenced(with_code_versions(defs.assets or []), environ)
    return Definitions(
        assets=assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        schedules=defs.schedules,
        sensors=defs.sensors,
        resources=defs.resources,
        executor=defs.executor,
        loggers=defs.loggers,
    ).map_asset_specs(func=catalog_spec)
