"""The model summary of an analysis: graph, trace work units (and cache hits), data."""

from phasemake import read_graph, read_plan
from phasemake.core.joblog import job_log
from phasemake.data.observations import read_header
from phasemake.report.tables import (
    build_seconds,
    data_facts,
    model_table,
    unit_origins,
    write_html,
)

snakemake = snakemake  # noqa: F821  (injected by Snakemake's script directive)

with job_log(snakemake.log[0], "summarise_model") as log:
    graph = read_graph(snakemake.input.graph)
    units, plan = read_plan(snakemake.input.plan)
    rows = unit_origins(
        units,
        spec=plan["spec"],
        units_dir=snakemake.params.units_dir,
        benchmarks=snakemake.params.unit_benchmarks,
    )
    facts = {
        "vertices": graph.n_vertices,
        "edges": graph.n_edges,
        "absorbing vertices": int(graph.absorbing.sum()),
        "parameters": ", ".join(graph.parameters),
        "graph build job (s)": build_seconds(snakemake.params.build_benchmark),
        "topological levels": plan["levels"],
    }
    page = model_table(
        snakemake.wildcards.analysis,
        model=dict(snakemake.params.model),
        graph=facts,
        units=rows,
        data=data_facts(read_header(snakemake.input.observations)),
    )
    write_html(page, snakemake.output.table)
    log.info("%s; %d units, %d reused", graph.summary(), len(rows), sum(not r["own"] for r in rows))
