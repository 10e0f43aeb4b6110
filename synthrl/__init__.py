"""synthrl: pre-training offline RL agents (DT, CQL) on synthetic data, and sweeping the ablations.

Science lives in the sub-packages (``synthetic``, ``data``, ``envs``, ``dt``, ``cql``) and knows
nothing of Ray; ``trainables/`` adapts it to Ray Tune; ``analysis/`` turns run directories into the
paper's tables.
"""

__version__ = "0.1.0"
