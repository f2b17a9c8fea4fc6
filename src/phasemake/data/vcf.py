"""VCF/BCF and tree sequences → windowed SFS, one region per job.

VCF/BCF files are read with cyvcf2 (htslib), one region query on the index (``.tbi`` or
``.csi``) per job, streaming: memory holds the windows, the region's mask and a batch of
genotype arrays, whatever the file's size. Only biallelic SNPs are counted; every other
record is skipped and counted by reason (:data:`phasemake.data.genomes.REASONS`). Genotypes
come as one NumPy array per record (missing alleles missing); the samples must share one
ploidy. The ancestral allele is ``INFO/AA`` (``ancestral="info"``, case-insensitive, the
part before a ``|``), the base of a FASTA (with its ``.fai``) at the position, or none
(``folded`` only). The derived count is the ALT count when the ancestral allele is REF, the
REF count when it is ALT.

Tree sequences (``.trees``, tskit) give one contig (``"1"`` unless named); allele 0 is
ancestral, any other derived, missing data (``-1``) projected like missing genotypes. Their
positions are 0-based: ``ts.write_vcf`` writes ``POS`` = position unless given
``position_transform=lambda p: np.round(p).astype(int) + 1``, so only with that transform
do a tree sequence and its VCF put a site at a window's first base in the same window.

Windows, mask, sites ``L`` and the hypergeometric projection to ``n`` lineages (which also
subsamples when the samples give more than ``n`` haploids) are the core's:
:mod:`phasemake.data.genomes`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings

import numpy as np

from phasemake.core.errors import DataError
from phasemake.data import genomes as core
from phasemake.data.bed import chunk_windows, names, read_bed
from phasemake.data.genomes import Region, WindowedSFS

__all__ = ["Region", "WindowedSFS", "read_popmap", "sfs_from_trees", "sfs_from_vcf", "vcf_regions"]

logger = logging.getLogger(__name__)
PROGRESS = 1_000_000  # records between progress lines
BASES = frozenset("ACGT")


# -- parse time --------------------------------------------------------------------------------
def _is_trees(path) -> bool:
    return str(path).lower().endswith(".trees")


def _query(contig: str, start: int | None = None, end: int | None = None) -> str:
    """An htslib region string (1-based, inclusive); braces around names with a colon."""
    name = f"{{{contig}}}" if ":" in contig else contig
    return name if start is None else f"{name}:{start + 1}-{end}"


def _open(path, samples: list[str] | None = None):
    """The VCF/BCF through cyvcf2, with its index required (region queries)."""
    import cyvcf2

    path = str(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file; check data.vcf.file")
    if not any(os.path.isfile(path + s) for s in (".tbi", ".csi")):
        raise DataError(
            f"{path}: no index ({path}.tbi or .csi); the extraction reads one region per job: "
            "compress with bgzip and index it (tabix -p vcf FILE.vcf.gz, or bcftools index)"
        )
    try:
        return cyvcf2.VCF(path, samples=samples, lazy=True)
    except OSError as err:
        raise DataError(f"{path}: cannot be read as VCF/BCF ({err})") from None


def _contig_lengths(vcf) -> dict[str, int | None]:
    """Contigs of the header's ``##contig`` lines (in order) and their lengths (or None)."""
    out: dict[str, int | None] = {}
    for line in vcf.raw_header.splitlines():
        if line.startswith("##contig=<"):
            name = re.search(r"[<,]ID=([^,>]+)", line)
            length = re.search(r"[<,]length=(\d+)", line)
            if name:
                out[name.group(1)] = int(length.group(1)) if length else None
    return out


def _with_records(vcf, contigs: list[str]) -> list[str]:
    """The contigs that have a record (one index lookup each)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cyvcf2 warns about contigs without records
        return [c for c in contigs if next(iter(vcf(_query(c))), None) is not None]


def vcf_regions(
    path: str | os.PathLike[str],
    *,
    window_bases: int | None = None,
    windows_bed: str | os.PathLike[str] | None = None,
    region_bases: int | None = None,
    contigs: list[str] | None = None,
) -> list[Region]:
    """The regions (one extraction job each) of a VCF/BCF or ``.trees`` file, from its
    header and index only: one per contig with records (or per contig of the windows BED
    that has records), split into chunks of ``region_bases`` (a multiple of
    ``window_bases``, at least one window; with a windows BED, whole windows).

    Raises
    ------
    DataError
        Naming the file: no index, a contig with records but no length in the header (and
        no windows BED), ``contigs`` not in the file, or a windows BED on other contigs.

    Examples
    --------
    >>> import tempfile, pathlib, pysam
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.vcf"
    >>> head = "#CHROM\\tPOS\\tID\\tREF\\tALT\\tQUAL\\tFILTER\\tINFO\\n"
    >>> _ = p.write_text("##fileformat=VCFv4.2\\n##contig=<ID=1,length=2500>\\n" + head
    ...                  + "1\\t5\\t.\\tA\\tC\\t.\\t.\\t.\\n")
    >>> gz = pysam.tabix_index(str(p), preset="vcf", force=True)
    >>> vcf_regions(gz, window_bases=1000, region_bases=2000)
    [Region(contig='1', start=0, end=2000), Region(contig='1', start=2000, end=2500)]
    """
    if (window_bases is None) == (windows_bed is None):
        raise DataError(f"{path}: give exactly one of window_bases and windows_bed")
    if _is_trees(path):
        import tskit

        ts = tskit.load(str(path))
        name = contigs[0] if contigs else "1"
        lengths: dict[str, int | None] = {name: math.ceil(ts.sequence_length)}
        present = [name]
    else:
        vcf = _open(path)
        lengths = _contig_lengths(vcf)
        known = list(dict.fromkeys([*lengths, *vcf.seqnames]))
        present = _with_records(vcf, known)
        if contigs is not None:
            unknown = [c for c in contigs if c not in known]
            if unknown:
                raise DataError(
                    f"{path}: contig(s) {names(unknown)} not in the file (it has "
                    f"{names(known)}); fix the contig names"
                )
            present = [c for c in present if c in contigs]
    regions: list[Region] = []
    if windows_bed is not None:
        bed = read_bed(windows_bed)
        if bed and not set(bed) & set(present):
            raise DataError(
                f"{windows_bed}: no window on a contig with records in {path} (BED: "
                f"{names(bed)}; {path}: {names(present)}); rename the BED's contigs"
            )
        for contig, (starts, ends) in bed.items():
            if contig in present:
                chunks = chunk_windows(starts, ends, region_bases)
                regions += [Region(contig, a, b) for a, b in chunks]
        return regions
    for contig in present:
        length = lengths.get(contig)
        if length is None:
            raise DataError(
                f"{path}: contig {contig!r} has records but no length in the header "
                f"(##contig=<ID={contig},length=...>); add the lengths (bcftools reheader "
                "--fai REF.fa.fai) or give a windows BED"
            )
        size = length
        if region_bases is not None:  # whole windows, at least one
            size = max(1, region_bases // window_bases) * window_bases
        regions += [Region(contig, s, min(s + size, length)) for s in range(0, length, size)]
    return regions


# -- samples -----------------------------------------------------------------------------------
def read_popmap(path: str | os.PathLike[str], population: str) -> list[str]:
    """The samples of ``population`` in a population map (``sample population`` per line,
    whitespace-separated, ``#`` comments).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "pop.txt"
    >>> _ = p.write_text("# sample pop\\na1 A\\nb1 B\\na2 A\\n")
    >>> read_popmap(p, "A")
    ['a1', 'a2']
    """
    members: dict[str, list[str]] = {}
    with open(path) as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) != 2:
                raise DataError(
                    f"{path}: line {number}: {line.strip()!r}; expected two columns: "
                    "sample population"
                )
            members.setdefault(fields[1], []).append(fields[0])
    if population not in members:
        raise DataError(
            f"{path}: no sample of population {population!r} (populations: "
            f"{names(members)}); fix data.vcf.population"
        )
    return members[population]


def _samples(path, available, samples, popmap, population, n) -> list[str]:
    if popmap is not None or population is not None:
        if popmap is None or population is None:
            raise DataError(f"{path}: popmap and population go together; give both")
        samples = read_popmap(popmap, population)
    chosen = list(available) if samples is None else list(dict.fromkeys(samples))
    missing = [s for s in chosen if s not in set(available)]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} sample(s) not in the VCF: {names(missing)} "
            f"(the VCF has {names(available)}); fix the samples or the popmap"
        )
    if 2 * len(chosen) < n:
        raise DataError(
            f"{path}: {len(chosen)} samples give at most {2 * len(chosen)} haploids (diploid); "
            f"the model's n = {n} needs at least n called haploids: more samples or smaller n"
        )
    return chosen


# -- ancestral allele from a FASTA -------------------------------------------------------------
class _Fasta:
    """Bases of one contig of an indexed FASTA, fetched 1 Mb at a time (upper case)."""

    BLOCK = 1 << 20

    def __init__(self, path, contig: str) -> None:
        import pysam

        if not os.path.isfile(str(path) + ".fai"):
            raise DataError(
                f"{path}: the ancestral FASTA has no index ({path}.fai); index it: "
                f"samtools faidx {path}"
            )
        try:
            self.fasta = pysam.FastaFile(str(path))
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: cannot be read as an indexed FASTA ({err})") from None
        if contig not in self.fasta.references:
            raise DataError(
                f"{path}: no sequence {contig!r} in the ancestral FASTA (it has "
                f"{names(self.fasta.references)}); rename the FASTA's sequences"
            )
        self.contig, self.start, self.seq = contig, -1, ""

    def base(self, pos: int) -> str:
        if not 0 <= pos - self.start < len(self.seq):
            self.start = pos
            self.seq = self.fasta.fetch(self.contig, pos, pos + self.BLOCK).upper()
        offset = pos - self.start
        return self.seq[offset] if offset < len(self.seq) else "N"


# -- extraction --------------------------------------------------------------------------------
def sfs_from_vcf(
    path: str | os.PathLike[str],
    *,
    n: int,
    region: Region,
    samples: list[str] | None = None,
    popmap: str | os.PathLike[str] | None = None,
    population: str | None = None,
    window_bases: int | None = None,
    windows_bed: str | os.PathLike[str] | None = None,
    mask_bed: str | os.PathLike[str] | None = None,
    ancestral: str | None = "info",
    folded: bool = False,
    pass_only: bool = True,
) -> WindowedSFS:
    """The windowed SFS of one region of a VCF/BCF, projected to ``n`` haploids.

    Parameters
    ----------
    n
        The model's haploid lineages; the samples must give at least ``n`` called haploids.
    region
        The job's ``contig:[start, end)`` (:func:`vcf_regions`).
    samples, popmap, population
        VCF sample names, or a population map and the population to take; all samples by
        default.
    window_bases, windows_bed
        Exactly one: windows of this many bases tiling the region, or a BED of windows.
    mask_bed
        A BED of callable bases (optional); ``sites`` counts the mask's bases per window.
    ancestral
        ``"info"`` (``INFO/AA``), the path of an indexed FASTA, or ``None`` (``folded``).
    folded
        Fold the projected SFS: ``n // 2`` minor-allele classes.
    pass_only
        Skip the records whose FILTER is neither ``PASS`` nor ``.``.

    Raises
    ------
    DataError
        Naming the file and the record (``contig:POS``) or line, what was expected and the
        fix: samples missing, fewer than ``n`` haploids, no ancestral allele (no ``INFO/AA``,
        no FASTA, not folded), an unsorted record, mixed ploidy, a mask on other contigs.

    Examples
    --------
    >>> import tempfile, pathlib, pysam
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.vcf"
    >>> head = "#CHROM\\tPOS\\tID\\tREF\\tALT\\tQUAL\\tFILTER\\tINFO\\tFORMAT\\ta\\tb\\n"
    >>> _ = p.write_text("##fileformat=VCFv4.2\\n##contig=<ID=1,length=100>\\n"
    ...     '##INFO=<ID=AA,Number=1,Type=String,Description="ancestral">\\n'
    ...     '##FORMAT=<ID=GT,Number=1,Type=String,Description="genotype">\\n' + head +
    ...     "1\\t5\\t.\\tA\\tC\\t.\\tPASS\\tAA=A\\tGT\\t0|1\\t0|0\\n"
    ...     "1\\t60\\t.\\tA\\tG\\t.\\tPASS\\tAA=G\\tGT\\t0|1\\t./.\\n")
    >>> gz = pysam.tabix_index(str(p), preset="vcf", force=True)
    >>> w = sfs_from_vcf(gz, n=2, region=Region("1", 0, 100), window_bases=50)
    >>> w.counts.tolist(), w.sites.tolist()
    ([[0.5], [1.0]], [50.0, 50.0])
    """
    source = str(path)
    if ancestral is None and not folded:
        raise DataError(
            f"{source}: no ancestral allele: set folded: true or give INFO/AA or a FASTA"
        )
    header = _open(path)
    if ancestral == "info" and not re.search(r"^##INFO=<ID=AA,", header.raw_header, re.M):
        raise DataError(
            f"{source}: no ancestral allele: set folded: true or give INFO/AA or a FASTA "
            "(the header has no ##INFO=<ID=AA,...> line)"
        )
    chosen = _samples(source, header.samples, samples, popmap, population, n)
    lengths = _contig_lengths(header)
    known = list(dict.fromkeys([*lengths, *header.seqnames]))
    if region.contig not in known:
        raise DataError(f"{source}: no contig {region.contig!r} (it has {names(known)})")
    windows = {"window_bases": window_bases, "windows_bed": windows_bed, "mask_bed": mask_bed}
    length = lengths.get(region.contig)
    counter = core.region_counter(
        region, n=n, folded=folded, contig_length=length, contigs=known, source=source, **windows
    )
    fasta = _Fasta(ancestral, region.contig) if ancestral not in (None, "info") else None
    vcf = _open(path, samples=chosen if chosen != list(header.samples) else None)
    batch = core.GenotypeBatch(counter, samples=list(vcf.samples), source=source)
    end = max(region.end, int(counter.end[-1])) if counter.end.size else region.start
    records, last = 0, region.start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no intervals found": a region without records
        for rec in vcf(_query(region.contig, region.start, end)) if end > region.start else ():
            pos = rec.start
            if pos < region.start:
                continue  # starts in the previous region (an indel reaching into this one)
            if pos < last:
                raise DataError(
                    f"{source}: record {region.contig}:{pos + 1} comes after "
                    f"{region.contig}:{last + 1}; expected records sorted by position: "
                    f"bcftools sort {source} -Oz -o sorted.vcf.gz && bcftools index sorted.vcf.gz"
                )
            last = pos
            records += 1
            if records % PROGRESS == 0:
                logger.info("%s: %s:%d, %d records read", source, region.contig, pos + 1, records)
            window = counter.locate(pos)
            if window < 0:
                continue
            alt, ref = rec.ALT, rec.REF
            if len(alt) != 1 or len(ref) != 1 or len(alt[0]) != 1 or alt[0] in "*.":
                if alt:  # no ALT: a monomorphic site, neither counted nor removed
                    batch.drop(pos, window, core.MULTIALLELIC if len(alt) > 1 else core.NOT_SNP)
                continue
            if pass_only and rec.FILTER is not None:
                batch.drop(pos, window, core.FILTERED)
                continue
            flip = False
            if ancestral is not None:
                aa = fasta.base(pos) if fasta else str(rec.INFO.get("AA") or ".").split("|")[0]
                aa = aa.upper()
                if aa not in BASES or aa not in (ref.upper(), alt[0].upper()):
                    batch.drop(pos, window, core.NO_ANCESTRAL)
                    continue
                flip = aa != ref.upper()
            batch.add(pos, window, rec.genotype.array()[:, :-1], flip=flip)  # no phase
    batch.flush()
    out = counter.result(records=records)
    _summary(source, region, out)
    return out


def sfs_from_trees(
    path: str | os.PathLike[str],
    *,
    n: int,
    region: Region,
    samples: list[int] | None = None,
    window_bases: int | None = None,
    windows_bed: str | os.PathLike[str] | None = None,
    mask_bed: str | os.PathLike[str] | None = None,
    folded: bool = False,
) -> WindowedSFS:
    """The windowed SFS of one region of a tskit tree sequence (sample nodes ``samples``,
    all by default), projected to ``n`` haploids: the same core as :func:`sfs_from_vcf`.

    Examples
    --------
    >>> import msprime, tempfile, pathlib
    >>> ts = msprime.sim_mutations(msprime.sim_ancestry(2, sequence_length=1e4,
    ...     population_size=1e4, random_seed=1), rate=1e-7, random_seed=1)
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.trees"; ts.dump(p)
    >>> w = sfs_from_trees(p, n=4, region=Region("1", 0, 10_000), window_bases=10_000)
    >>> afs = ts.allele_frequency_spectrum(mode="site", polarised=True, span_normalise=False)
    >>> w.counts[0].tolist() == afs[1:-1].tolist()
    True
    """
    import tskit

    source = str(path)
    try:
        ts = tskit.load(source)
    except (OSError, tskit.FileFormatError) as err:
        raise DataError(f"{source}: cannot be read as a tree sequence ({err})") from None
    nodes = ts.samples() if samples is None else np.asarray(samples, dtype=np.int32)
    if nodes.size < n:
        raise DataError(
            f"{source}: {nodes.size} sample nodes; the model's n = {n} needs at least n"
        )
    windows = {"window_bases": window_bases, "windows_bed": windows_bed, "mask_bed": mask_bed}
    length = math.ceil(ts.sequence_length)
    counter = core.region_counter(
        region,
        n=n,
        folded=folded,
        contig_length=length,
        contigs=[region.contig],
        source=source,
        **windows,
    )
    end = max(region.end, int(counter.end[-1])) if counter.end.size else region.start
    batch = core.GenotypeBatch(counter, samples=[str(u) for u in nodes], source=source)
    left, right, records = min(region.start, length), min(end, ts.sequence_length), 0
    for var in ts.variants(samples=nodes, left=left, right=right) if left < right else ():
        records += 1
        position = int(var.position)
        window = counter.locate(position)
        if window >= 0:
            batch.add(position, window, var.genotypes[:, None])
    batch.flush()
    out = counter.result(records=records)
    _summary(source, region, out)
    return out


def _summary(source: str, region: Region, out: WindowedSFS) -> None:
    """The summary log line of a region: records read, windows, SNPs, skipped by reason."""
    where = f"{source}: {region.contig}:{region.start}-{region.end}"
    skipped = ", ".join(f"{k} {v}" for k, v in out.skipped.items()) or "none"
    snps = float(out.counts.sum())
    logger.info(
        f"{where}: {out.records} records, {out.start.size} windows, {snps:.1f} segregating "
        f"sites (projected); skipped: {skipped}"
    )
