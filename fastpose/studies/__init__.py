"""Studies: sweeps over configs and seeds (``fastpose sweep``) and group statistics (``compare --sweep``).

Torch-free: a sweep runs each cell as a ``fastpose train``/``fastpose resume`` subprocess (locally, or in a
SLURM job through submitit), so every cell is an ordinary journaled run of the same code path.
"""
