"""What every stage shares: artefact files (atomic writes, format versions, checksums), the
canonical encoding that hashes are built on, the exception types, job logs and the
JAX compilation clock.

Nothing here imports another phasemake subpackage.
"""
