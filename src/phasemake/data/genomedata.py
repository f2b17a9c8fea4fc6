"""Genomes as an analysis's data (``data.vcf``): the regions (one extraction job each),
their parse-time checks, one region's windowed SFS, and the regions joined in order.

The extraction itself (windows, mask, projection, folding; VCF through cyvcf2, tree
sequences through tskit) is :mod:`phasemake.data.vcf`. A region's windows are stored as
an observations file (:func:`phasemake.data.observations.write_observations`) with the
columns ``sites``, ``counts``, ``contig`` (the index of the region's contig among the
data's contigs), ``start`` and ``end``; the data job joins them in region order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from phasemake.core.errors import DataError
from phasemake.data.observations import Observations, read_header, read_observations, validate

__all__ = [
    "check_genome_analysis",
    "contig_index",
    "extract_region",
    "genome_regions",
    "genome_windows",
    "join_regions",
    "region_name",
    "skipped_text",
]


def _source(vcf: dict[str, Any]) -> str:
    return "trees" if str(vcf["file"]).lower().endswith(".trees") else "vcf"


def genome_regions(vcf: dict[str, Any], *, where: str) -> list[dict[str, Any]]:
    """Parse time: check the files of a ``data.vcf`` section and list its regions as
    ``{"contig", "start", "end"}`` (from the header and the index only).

    Raises
    ------
    DataError
        Naming ``where`` and the missing file or the problem the header shows.
    """
    from phasemake.data.vcf import vcf_regions

    for key in ("file", "windows_bed", "mask", "popmap"):
        path = vcf.get(key)
        if path is not None and not os.path.isfile(path):
            raise DataError(f"{where}.{key} = {path!r} does not exist")
    ancestral = vcf.get("ancestral", "info")
    if ancestral not in (None, "info") and not os.path.isfile(ancestral):
        raise DataError(
            f"{where}.ancestral = {ancestral!r}: neither 'info' (INFO/AA), null (with "
            "data.folded: true) nor an existing FASTA file"
        )
    if (vcf.get("population") is None) != (vcf.get("popmap") is None):
        raise DataError(f"{where}: popmap and population go together (give both or neither)")
    if vcf.get("samples") and vcf.get("popmap"):
        raise DataError(f"{where}: samples or popmap/population, not both")
    try:
        regions = vcf_regions(
            vcf["file"],
            window_bases=None if vcf.get("windows_bed") else vcf.get("window_bases", 100_000),
            windows_bed=vcf.get("windows_bed"),
            region_bases=vcf.get("region_bases"),
        )
    except (OSError, ValueError) as err:
        if isinstance(err, DataError):
            raise DataError(f"{where}: {err}") from None
        raise DataError(f"{where}.file = {vcf['file']!r} cannot be read ({err})") from None
    if not regions:
        raise DataError(f"{where}.file = {vcf['file']!r} has no records in any contig")
    return [{"contig": r.contig, "start": int(r.start), "end": int(r.end)} for r in regions]


def skipped_text(skipped: dict[str, int]) -> str:
    """Skipped records by reason, for a log line.

    Examples
    --------
    >>> skipped_text({"multiallelic": 3, "filtered (FILTER not PASS)": 1}), skipped_text({})
    ('filtered (FILTER not PASS) 1, multiallelic 3', 'none')
    """
    return ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none"


def contig_index(regions: list[dict[str, Any]], index: int) -> int:
    """The index of region ``index``'s contig among the regions' contigs (in order).

    Examples
    --------
    >>> regions = [{"contig": "2"}, {"contig": "2"}, {"contig": "X"}]
    >>> [contig_index(regions, i) for i in range(3)]
    [0, 0, 1]
    """
    contigs = list(dict.fromkeys(r["contig"] for r in regions))
    return contigs.index(regions[index]["contig"])


def region_name(index: int) -> str:
    """The file name stem of region ``index`` (contig names may hold any character)."""
    return f"region{index}"


def extract_region(
    vcf: dict[str, Any], region: dict[str, Any], *, n: int, folded: bool, contig_index: int
) -> tuple[Observations, dict[str, Any]]:
    """One region's windows as observations (columns as in the module docstring) and what
    was read and skipped (``records``, ``skipped`` by reason, ``windows``)."""
    from phasemake.data import vcf as genomes

    where = genomes.Region(region["contig"], int(region["start"]), int(region["end"]))
    windows = {
        "window_bases": None if vcf.get("windows_bed") else vcf.get("window_bases", 100_000),
        "windows_bed": vcf.get("windows_bed"),
        "mask_bed": vcf.get("mask"),
    }
    if _source(vcf) == "trees":
        out = genomes.sfs_from_trees(vcf["file"], n=n, region=where, folded=folded, **windows)
    else:
        out = genomes.sfs_from_vcf(
            vcf["file"],
            n=n,
            region=where,
            samples=vcf.get("samples"),
            popmap=vcf.get("popmap"),
            population=vcf.get("population"),
            ancestral=vcf.get("ancestral", "info"),
            folded=folded,
            pass_only=vcf.get("pass_only", True),
            **windows,
        )
    w = len(out.start)
    columns = {
        "sites": np.asarray(out.sites, dtype=np.float64),
        "counts": np.asarray(out.counts, dtype=np.float64).reshape(w, -1),
        "contig": np.full(w, float(contig_index)),
        "start": np.asarray(out.start, dtype=np.float64),
        "end": np.asarray(out.end, dtype=np.float64),
    }
    info = {"records": int(out.records), "skipped": dict(out.skipped), "windows": w}
    return Observations("sfs", columns), info


def join_regions(
    paths: list[str | os.PathLike[str]], *, n_classes: int, source: str
) -> tuple[Observations, dict[str, Any]]:
    """The regions' windows in region order, windows without a callable site dropped, and
    validated; with the total ``records``, ``skipped`` by reason and ``dropped`` windows.

    Raises
    ------
    DataError
        No window with a callable site, or counts of the wrong number of classes.
    """
    parts, records, skipped, dropped = [], 0, {}, 0
    for path in paths:
        obs = read_observations(path) if _rows(path) else None
        info = read_header(path)["provenance"].get("extraction", {})
        records += int(info.get("records", 0))
        for reason, count in info.get("skipped", {}).items():
            skipped[reason] = skipped.get(reason, 0) + int(count)
        if obs is None:
            continue
        keep = obs.columns["sites"] > 0
        dropped += int(np.sum(~keep))
        parts.append({k: v[keep] for k, v in obs.columns.items()})
    parts = [p for p in parts if len(p["sites"])]
    if not parts:
        raise DataError(
            f"{source}: no window has a callable site (check the mask, the windows and the "
            "contig names)"
        )
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    obs = validate("sfs", columns, source=source, n_classes=n_classes, projected=True)
    return obs, {"records": records, "skipped": skipped, "dropped_windows": dropped}


def _rows(path: str | os.PathLike[str]) -> int:
    return int(read_header(Path(path))["n_rows"])


def check_genome_analysis(analysis: dict[str, Any], *, where: str) -> None:
    """Parse-time checks of an analysis's ``data.vcf``, ``data.folded``,
    ``misidentification`` and ``linkage`` against each other; a ``data.vcf`` analysis gets
    its ``regions`` (:func:`genome_regions`), in place.

    Raises
    ------
    DataError
        Naming ``where`` and the setting, what was expected and the fix.

    Examples
    --------
    >>> a = {"observations": "absorption_times", "data": {"file": "t.csv"},
    ...      "linkage": {"block_bases": 1000}}
    >>> try:
    ...     check_genome_analysis(a, where="analyses.x")
    ... except DataError as err:
    ...     print(str(err)[:60])
    analyses.x.linkage.block_bases: needs windows with positions
    """
    data, kind = analysis["data"], analysis["observations"]
    from phasemake.fit.linkage import block_choice

    linkage = block_choice(analysis.get("linkage"))
    chosen = list(linkage)
    if len(chosen) > 1:
        raise DataError(f"{where}.linkage: {' and '.join(chosen)}; give at most one of them")
    if "block_bases" in linkage and "vcf" not in data:
        raise DataError(
            f"{where}.linkage.block_bases: needs windows with positions (data.vcf); use "
            "linkage.block_rows (or groups, with a group column)"
        )
    if linkage.get("groups") and kind != "absorption_times":
        raise DataError(
            f"{where}.linkage.groups: only for absorption_times rows with a group column; "
            "use linkage.block_bases or block_rows"
        )
    folded = bool(data.get("folded", False))
    if kind != "sfs" and (folded or analysis.get("misidentification") or "vcf" in data):
        which = "data.vcf" if "vcf" in data else "data.folded" if folded else "misidentification"
        raise DataError(f"{where}.{which}: only for observations: sfs")
    if folded and analysis.get("misidentification"):
        raise DataError(
            f"{where}.misidentification: a folded SFS does not depend on ε; remove "
            "misidentification or give the ancestral allele and unfold"
        )
    vcf = data.get("vcf")
    if vcf is None:
        return
    if vcf.get("ancestral", "info") is None and not folded:
        raise DataError(
            f"{where}.data.vcf.ancestral is null: without the ancestral allele only the "
            "folded SFS is known; set data.folded: true (or give INFO/AA or a FASTA)"
        )
    analysis["regions"] = genome_regions(vcf, where=f"{where}.data.vcf")


def genome_windows(analysis: dict[str, Any]) -> int:
    """Windows of a ``data.vcf`` analysis's regions, counted at parse time (the windows
    BED's lines in the regions' contigs, or the regions' lengths over the window size)."""
    vcf = analysis["data"]["vcf"]
    regions = analysis.get("regions", [])
    if vcf.get("windows_bed"):
        contigs = {r["contig"] for r in regions}
        with open(vcf["windows_bed"]) as fh:
            return sum(1 for line in fh if line.split("\t", 1)[0] in contigs)
    size = int(vcf.get("window_bases", 100_000))
    return sum(-(-(r["end"] - r["start"]) // size) for r in regions)
