"""`star versions …` and `star compat …`: embedding vintages, their compatibility maps and the parity gate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from star.cli_choices import ConsumerKind
from star.cli_common import _emit, _target
from star.versions.config import GateConfig

versions_app = typer.Typer(no_args_is_help=True, help="Embedding vintages: list, show, publish, deprecate, retire.")
compat_app = typer.Typer(no_args_is_help=True, help="Linear compatibility maps between vintages.")


def _gate_option(name: str):
    """The option of `star versions publish` for GateConfig field `name`: its default and help."""
    return typer.Option(getattr(GateConfig(), name), help=GateConfig.help(name))


def _feast_consumers(target, view: str) -> list[str]:
    """Feast feature services that read `view` (consumers registered by `feast apply`)."""
    from star.store.feast_repo import open_store

    services = open_store(target).list_feature_services()
    return sorted(fs.name for fs in services if any(p.name == view for p in fs.feature_view_projections))


@versions_app.command("list")
def versions_list(family: Optional[str] = typer.Argument(None, help="e.g. member_text_embedding")) -> None:
    """Every embedding vintage: status, dimension, what serves it, how many consumers."""
    from star.db import connect
    from star.versions.lifecycle import list_versions

    with connect(_target()) as conn:
        for row in list_versions(conn, family):
            _emit(row)


@versions_app.command("show")
def versions_show(family: str, version: int) -> None:
    """One vintage: lineage, metrics, consumers (registered and Feast feature services), compat maps."""
    from star.db import connect
    from star.store.registry import view_name
    from star.versions.lifecycle import show

    target = _target()
    with connect(target) as conn:
        _emit(show(conn, family, version, feast_consumers=_feast_consumers(target, view_name(family, version))))


@versions_app.command("consumer")
def versions_consumer(family: str, version: int, consumer: str,
                      kind: ConsumerKind = typer.Option(ConsumerKind.ranker, help="docs/versions.md")) -> None:
    """Record that CONSUMER reads FAMILY vVERSION (shown by `show` before a retirement)."""
    from star.db import connect
    from star.versions.lifecycle import register_consumer

    with connect(_target()) as conn:
        register_consumer(conn, family, version, consumer, kind.value)
        conn.commit()
    _emit({"job": "versions consumer", "family": family, "version": version, "consumer": consumer,
           "kind": kind.value})


@versions_app.command("publish")
def versions_publish(
    family: str, version: int,
    ranker: Path = typer.Option(..., help="the frozen ranker dir (star.ranker.save) pinned to the older vintage"),
    task: str = typer.Option("apply", help="interaction relation labelled 1 in the held-out rows"),
    max_auc_drop: float = _gate_option("max_auc_drop"),
    min_mean: float = _gate_option("min_mean"),
    min_p5: float = _gate_option("min_p5"),
    min_overlap: Optional[float] = _gate_option("min_overlap"),
    k: int = _gate_option("k"),
) -> None:
    """Publish a candidate vintage through the parity gate (map fit, ranker AUC parity, alignment, overlap)."""
    from star.versions.gate import GateFailed
    from star.versions.publish import publish

    try:
        gate = GateConfig(max_auc_drop=max_auc_drop, min_mean=min_mean, min_p5=min_p5, min_overlap=min_overlap, k=k)
        _emit(publish(_target(), family, version, ranker_dir=ranker, task=task, gate=gate))
    except GateFailed as exc:  # the numbers first, then the refusal
        _emit({"job": "versions publish", "family": family, "version": version, "status": "candidate",
               "gate": exc.report})
        raise


@versions_app.command("deprecate")
def versions_deprecate(family: str, version: int) -> None:
    """Mark a published vintage deprecated (still served from its own rows)."""
    from star.db import connect
    from star.versions.pending import finish_pending
    from star.store.locks import family_lock
    from star.store.serving import apply_features
    from star.versions.lifecycle import deprecate

    target = _target()
    with family_lock(target, [family]):
        finish_pending(target, [family])
        with connect(target) as conn:
            result = deprecate(conn, family, version)
            conn.commit()
        apply_features(target)  # the view's Feast tags: star_status deprecated
    _emit(result)


@versions_app.command("retire")
def versions_retire(family: str, version: int,
                    source: Optional[int] = typer.Option(None, help="serve it from this vintage (default: newest "
                                                                        "published)"),
                    drop_uncovered: bool = typer.Option(False, "--drop-uncovered",
                                                        help="retire even when the serving vintage lacks vectors for "
                                                             "some entities: those are then served as missing")
                    ) -> None:
    """Drop a vintage's rows, table and index; keep serving it (Feast and SQL) through the compat map."""
    from star.versions.retire import retire

    _emit(retire(_target(), family, version, source=source, drop_uncovered=drop_uncovered))


@compat_app.command("fit")
def compat_fit(family: str, from_: int = typer.Option(..., "--from", help="the newer vintage (input)"),
               to: int = typer.Option(..., "--to", help="the older vintage (output space)"),
               ridge: float = typer.Option(1e-3, help="ridge strength (x mean diagonal of X'X)"),
               holdout: float = typer.Option(0.2, help="held-out share for the fit metrics, in (0, 1)")) -> None:
    """Fit W (and bias) so that W E_from + b ~ E_to on the entities current in both; store it."""
    from star.db import connect
    from star.versions.pending import finish_pending
    from star.store.locks import family_lock
    from star.versions.lifecycle import fit_map

    target = _target()
    with family_lock(target, [family]):
        finish_pending(target, [family])
        with connect(target) as conn:
            m = fit_map(conn, family, from_, to, ridge=ridge, holdout=holdout)
            conn.commit()
    _emit({"job": "compat fit", "family": family, "from": from_, "to": to, **m.metrics})


@compat_app.command("report")
def compat_report(family: str) -> None:
    """Every stored map of a family with its fit metrics."""
    from star.db import connect

    with connect(_target()) as conn:
        for a, b, metrics, created in conn.execute(
                "SELECT from_version, to_version, fit_metrics, created_at FROM star.embedding_compat "
                "WHERE family = %s ORDER BY 1, 2", (family,)):
            _emit({"family": family, "from": a, "to": b, "created_at": created, **metrics})
