# Input, params and resources functions of rules/graph.smk (Snakemake's linter keeps
# functions and rules in separate files).
# Only a configured model's graph can be built. The graph of a model that has left the config
# stays in the cache as a plain file: units first claimed by its plan are recorded from it.
CONFIGURED_SPECS = "|".join(SPEC_MODELS)


class _ModelNames:
    """Job messages name graphs by model: ``"{MODEL_OF:{wildcards.spec}}"`` formats as
    the config names of the models with that spec. (A message sees the workflow's globals
    but not its functions; a param would re-run the job when a model is renamed.)"""

    def __format__(self, spec):
        names = [name for name, m in MODELS.items() if m.spec == spec]
        if not names:
            return "a model no longer in the config"
        return ("model " if len(names) == 1 else "models ") + ", ".join(names)


MODEL_OF = _ModelNames()


def graph_files():
    """Every configured model's graph file."""
    return [f"{CACHE}/graphs/{spec}.h5" for spec in SPEC_MODELS]


def graph_recipe(wildcards):
    """What the build needs (callback, params, cap, a config name for its log), as one
    param that Snakemake's params trigger compares by spec only."""
    return GraphRecipe.of(_spec_model(wildcards))


def _spec_model(wildcards):
    try:
        return SPEC_MODELS[wildcards.spec]
    except KeyError:
        raise ValueError(
            f"spec {wildcards.spec} is not the spec of any model in the config; "
            "request graph files through `rule all` or the config's models"
        ) from None


def build_graph_mem_mb(wildcards, attempt):
    """A graph build (no input files): 2 GB, doubled on each retry."""
    return 2000 * _growth(attempt)


def build_graph_runtime(wildcards, attempt):
    """A graph build: 1 h, longer on each retry."""
    return 60 * attempt
