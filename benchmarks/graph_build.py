"""Graph building and cache loading for the block-counting coalescent, vs phasic.

Prints, for n in {20, 30, 40}: vertices, our build time, cache-hit load time (read + full
checksum verification) and their ratio, and phasic's build time and our speed-up when
phasic can be run. Also prints the spec-hash time (cold: first call in the process, which
parses the source; warm: median of repeated calls).

phasic is only ever installed for comparison, without its dependencies
(``pip install --no-deps phasic``). If it does not import in this interpreter, pass
``--phasic-python PATH`` to time it in another interpreter where it does (same run).

Usage::

    python benchmarks/graph_build.py [--sizes 20 30 40] [--repeats 3]
                                     [--phasic-python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

from doc_table import recorded
from phasic_models import BLOCK_COUNTING

PHASIC_SCRIPT = r"""
import json, sys, time
import phasic
{block_counting}
n, repeats = int(sys.argv[1]), int(sys.argv[2])
times, vertices = [], None
for _ in range(repeats):
    t = time.perf_counter()
    g = phasic.Graph(block_counting, ipv=[n] + [0] * (n - 1), theta_dim=1, graph_cache=False)
    times.append(time.perf_counter() - t)
    vertices = g.vertices_length()
print(json.dumps({"seconds": min(times), "vertices": vertices}))
"""


def phasic_build(n: int, repeats: int, python: str | None) -> tuple[float, int] | str:
    script = PHASIC_SCRIPT.replace("{block_counting}", BLOCK_COUNTING)
    cmd = [python or sys.executable, "-c", script, str(n), str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"phasic not run ({last})"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["seconds"], out["vertices"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 30, 40])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phasic-python", default=None)
    args = parser.parse_args()

    import phasemake
    from phasemake.models import block_counting

    t = time.perf_counter()
    phasemake.spec_hash(block_counting, n=40)
    cold = time.perf_counter() - t
    warm = []
    for _ in range(200):
        t = time.perf_counter()
        phasemake.spec_hash(block_counting, n=40)
        warm.append(time.perf_counter() - t)
    print(f"spec hash: cold {cold * 1e3:.3f} ms, warm {statistics.median(warm) * 1e3:.3f} ms")

    header = (
        f"{'n':>3} {'vertices':>9} {'edges':>9} {'build s':>9} {'load s':>9} "
        f"{'build/load':>10} {'phasic s':>9} {'phasic/ours':>11}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as root:
        cache = phasemake.GraphCache(root)
        for n in args.sizes:
            builds = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                graph = phasemake.build_graph(block_counting, n=n)
                builds.append(time.perf_counter() - t)
            build = min(builds)
            phasemake.write_graph(graph, cache.graph_path(graph.provenance["spec"]))
            loads = []
            for _ in range(max(5, args.repeats)):
                t = time.perf_counter()
                cache.load_or_build(block_counting, n=n)
                loads.append(time.perf_counter() - t)
            load = statistics.median(loads)
            ph = phasic_build(n, args.repeats, args.phasic_python)
            if isinstance(ph, str):
                ph_cols = f"{'-':>9} {'-':>11}   {ph}"
            else:
                ph_s, ph_v = ph
                ph_cols = f"{ph_s:>9.3f} {ph_s / build:>10.1f}x   (phasic vertices: {ph_v})"
            print(
                f"{n:>3} {graph.n_vertices:>9} {graph.n_edges:>9} {build:>9.3f} {load:>9.4f} "
                f"{build / load:>9.1f}x {ph_cols}"
            )
    print(
        "build = min over repeats; load = median cache hit (HDF5 read + sha256 verify); "
        "phasic = min over repeats, graph_cache=False; phasic counts one extra start vertex"
    )


if __name__ == "__main__":
    with recorded("graph_build"):  # also docs/performance/graph_build.md
        main()
