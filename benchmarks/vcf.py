"""VCF → windowed SFS: phasemake's extraction against a plain Python loop over cyvcf2.

Simulates ``--samples`` diploid individuals on ``--length`` bases with msprime (Ne = 1e4,
recombination 1e-8, mutation 2e-8 per base and generation), writes the VCF with
``ts.write_vcf``, adds ``INFO/AA`` (the ancestral allele; REF for the simulation), sets
``--missing`` of the genotypes to ``./.`` at random, and bgzips and indexes it. Then, each in
a fresh process (time from after the imports; peak resident memory from ``VmHWM`` in
``/proc/self/status``, with the imports' own peak beside it):

- ``phasemake``: :func:`phasemake.data.vcf.vcf_regions` (the parse-time header and index
  look-up) and :func:`phasemake.data.vcf.sfs_from_vcf` on the one region, windows of
  ``--window`` bases, projected to ``--n`` haploids (a subsample of the called haploids:
  the hypergeometric projection);
- ``python loop``: the same windowed SFS from the same cyvcf2 binding, written plainly:
  per record the same checks, the genotypes as ``variant.genotypes`` (Python lists) counted
  in a loop over the samples, the projection from ``math.comb`` (exact; cached per
  ``(m, j)``), the window's sites ``L`` less the dropped positions;
- scikit-allel, when it happens to be importable (never a dependency of phasemake):
  ``allel.read_vcf`` of GT and positions into memory, then the projection vectorised.

It prints the table (records per second, peak memory, time relative to phasemake) and the
largest difference between each SFS and phasemake's (all must agree to 1e-9).

Usage::

    python benchmarks/vcf.py [--samples 100] [--length 5e7] [--n 50] [--window 100000]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from doc_table import recorded

AA_HEADER = '##INFO=<ID=AA,Number=1,Type=String,Description="Ancestral allele">'


def simulate(path: Path, *, samples: int, length: float, missing: float, seed: int) -> dict:
    """Write the benchmark's VCF (bgzipped and indexed); its size and record count."""
    import msprime
    import pysam

    t = time.perf_counter()
    ts = msprime.sim_ancestry(
        samples=samples,
        sequence_length=length,
        recombination_rate=1e-8,
        population_size=1e4,
        random_seed=seed,
    )
    ts = msprime.sim_mutations(ts, rate=2e-8, random_seed=seed)
    rng = np.random.default_rng(seed)
    raw, text = path.with_suffix(".raw"), path.with_suffix("")  # x.vcf.raw, x.vcf
    with open(raw, "w") as out:
        ts.write_vcf(out, position_transform=lambda p: np.round(p).astype(int) + 1)
    with open(raw) as lines, open(text, "w") as out:
        for line in lines:
            if line.startswith("##fileformat"):
                out.write(line + AA_HEADER + "\n")
            elif line.startswith("#"):
                out.write(line.replace(f"length={int(length) + 1}", f"length={int(length)}"))
            else:
                f = line.rstrip("\n").split("\t")
                f[7] = f"AA={f[3]}"
                for k in np.flatnonzero(rng.random(samples) < missing):
                    f[9 + k] = "./."
                out.write("\t".join(f) + "\n")
    raw.unlink()
    pysam.tabix_index(str(text), preset="vcf", force=True)
    return {
        "sites": ts.num_sites,
        "seconds": time.perf_counter() - t,
        "mb": path.stat().st_size / 2**20,
    }


def run_phasemake(path: str, n: int, window: int) -> tuple[dict, np.ndarray, np.ndarray]:
    from phasemake.data.vcf import sfs_from_vcf, vcf_regions

    parts = [
        sfs_from_vcf(path, n=n, region=r, window_bases=window)
        for r in vcf_regions(path, window_bases=window)
    ]
    info = {"records": sum(p.records for p in parts)}
    return info, np.concatenate([p.counts for p in parts]), np.concatenate([p.sites for p in parts])


def run_loop(path: str, n: int, window: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """The plain version: one Python loop over records and samples."""
    import cyvcf2

    vcf = cyvcf2.VCF(path)
    length = dict(zip(vcf.seqnames, vcf.seqlens, strict=True))["1"]
    windows = -(-length // window)
    counts = [[0.0] * (n - 1) for _ in range(windows)]
    sites = [min(window, length - w * window) for w in range(windows)]
    cache: dict[tuple[int, int], list[float]] = {}
    records, last_dropped = 0, -1
    for variant in vcf("1"):
        records += 1
        pos = variant.POS - 1
        w = pos // window
        alt, ref = variant.ALT, variant.REF
        ok = len(alt) == 1 and len(ref) == 1 and len(alt[0]) == 1 and alt[0] not in "*."
        if not alt:
            continue
        derived = called = 0
        aa = str(variant.INFO.get("AA") or ".").upper()
        if ok and variant.FILTER is None and aa in (ref.upper(), alt[0].upper()):
            for genotype in variant.genotypes:
                for allele in genotype[:-1]:
                    if allele >= 0:
                        called += 1
                        derived += allele != 0
            if aa != ref.upper():
                derived = called - derived
        if called < n:  # dropped: not counted, and its base leaves L
            if pos != last_dropped:
                sites[w] -= 1
                last_dropped = pos
            continue
        if derived in (0, called):
            continue
        key = (called, derived)
        if key not in cache:
            total = math.comb(called, n)
            cache[key] = [
                math.comb(derived, i) * math.comb(called - derived, n - i) / total
                for i in range(1, n)
            ]
        row = counts[w]
        for i, p in enumerate(cache[key]):
            row[i] += p
    return {"records": records}, np.array(counts), np.array(sites, dtype=float)


def run_allel(path: str, n: int, window: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """scikit-allel: the whole genotype matrix in memory, then vectorised."""
    import allel
    import cyvcf2

    from phasemake.data.genomes import projection_matrix

    fields = ["POS", "REF", "ALT", "AA", "FILTER_PASS", "GT"]
    data = allel.read_vcf(path, fields=fields, alt_number=2)
    pos, gt = data["variants/POS"] - 1, data["calldata/GT"]
    ref, alt = data["variants/REF"].astype(str), data["variants/ALT"].astype(str)
    aa = np.char.upper(data["variants/AA"].astype(str))
    monomorphic = alt[:, 0] == ""
    snp = (np.char.str_len(ref) == 1) & (np.char.str_len(alt[:, 0]) == 1) & (alt[:, 1] == "")
    ok = snp & data["variants/FILTER_PASS"] & ((aa == ref) | (aa == alt[:, 0]))
    called, ones = (gt >= 0).sum(axis=(1, 2)), (gt == 1).sum(axis=(1, 2))
    derived = np.where(aa == ref, ones, called - ones)
    ok &= called >= n
    length = dict(zip(cyvcf2.VCF(path).seqnames, cyvcf2.VCF(path).seqlens, strict=True))["1"]
    windows = -(-length // window)
    counts = np.zeros((windows, n - 1))
    for m in np.unique(called[ok]):
        sel = ok & (called == m)
        np.add.at(counts, pos[sel] // window, projection_matrix(int(m), n)[derived[sel], 1:n])
    dropped = np.unique(pos[~ok & ~monomorphic])
    sites = np.minimum(window, length - np.arange(windows) * window).astype(float)
    sites -= np.bincount(dropped // window, minlength=windows)
    return {"records": int(pos.size)}, counts, sites


METHODS = {"phasemake": run_phasemake, "python loop": run_loop, "scikit-allel": run_allel}


def child(method: str, path: str, n: int, window: int, out: str) -> None:
    """In a fresh process: time one method after its imports; write its SFS to ``out``."""
    import cyvcf2  # noqa: F401  (phasemake imports it on first use)

    if method == "phasemake":
        import phasemake.data.vcf  # noqa: F401
    elif method == "scikit-allel":
        import allel  # noqa: F401
    base = peak_mb()
    t = time.perf_counter()
    info, counts, sites = METHODS[method](path, n, window)
    seconds = time.perf_counter() - t
    peak = peak_mb()
    np.savez(out, counts=counts, sites=sites)
    print(json.dumps({**info, "seconds": seconds, "peak_mb": peak, "base_mb": base}))


def peak_mb() -> float:
    """This process's peak resident memory: VmHWM (Linux; reset by exec, unlike ru_maxrss,
    which a child inherits from the process that forked it), else ru_maxrss."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(method: str, path: str, n: int, window: int, folder: str) -> dict:
    out = f"{folder}/{method.replace(' ', '_')}.npz"
    cmd = [sys.executable, __file__, "--child", method, path, str(n), str(window), out]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out) as z:
        result["counts"], result["sites"] = z["counts"], z["sites"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--length", type=float, default=5e7)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--window", type=int, default=100_000)
    parser.add_argument("--missing", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, path, n, window, out = args.child
        child(method, path, int(n), int(window), out)
        return

    folder = tempfile.mkdtemp(prefix="phasemake-vcf-bench-")
    try:
        path = Path(folder) / "sim.vcf.gz"
        sim = simulate(
            path, samples=args.samples, length=args.length, missing=args.missing, seed=args.seed
        )
        results = {m: measure(m, str(path), args.n, args.window, folder) for m in METHODS}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ours = results["phasemake"]
    if "error" in ours:
        raise RuntimeError(f"phasemake failed: {ours['error']}")

    print(
        f"VCF: {args.samples} diploid samples, {args.length:.3g} bases, {sim['sites']} records "
        f"({sim['mb']:.1f} MB bgzipped; simulated and written in {sim['seconds']:.0f} s), "
        f"{args.missing:.0%} genotypes missing, INFO/AA"
    )
    print(
        f"windowed SFS: windows of {args.window} bases, projected to n = {args.n} "
        f"(from up to {2 * args.samples} called haploids)"
    )
    print("each method in a fresh process, timed after its imports; peak = VmHWM of the")
    print("process (imports: the peak before the extraction started, cyvcf2 imported in")
    print("both). Timings are indicative.")
    print()
    head = ["method", "records", "seconds", "records/s", "peak MB (imports)", "time / phasemake"]
    head.append("max |SFS - phasemake|, |L - phasemake|")
    print("| " + " | ".join(head) + " |")
    print("|:---|" + "|".join("---:" for _ in head[1:]) + "|")
    notes = []
    for method, r in results.items():
        if "error" in r:
            notes.append(f"{method}: not run ({r['error']})")
            continue
        diff = float(np.max(np.abs(r["counts"] - ours["counts"]), initial=0.0))
        sites = float(np.max(np.abs(r["sites"] - ours["sites"]), initial=0.0))
        if r["counts"].shape != ours["counts"].shape or diff > 1e-9 or sites > 0:
            if method == "python loop":
                raise RuntimeError(f"{method}: the SFS differs from phasemake's ({diff}, {sites})")
            notes.append(f"{method}: its SFS differs from phasemake's ({diff:.1e}, {sites:.0f})")
        cells = [
            method,
            str(r["records"]),
            f"{r['seconds']:.2f}",
            f"{r['records'] / r['seconds']:,.0f}",
            f"{r['peak_mb']:.0f} ({r['base_mb']:.0f})",
            f"{r['seconds'] / ours['seconds']:.1f}",
            f"{diff:.1e}, {sites:.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    segregating = float(ours["counts"].sum())
    print(f"phasemake: {len(ours['sites'])} windows, {segregating:,.1f} projected SNPs")
    for note in notes:
        print(note)


if __name__ == "__main__":
    with recorded("vcf"):  # also docs/performance/vcf.md
        main()
