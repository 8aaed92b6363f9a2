"""lightning_discrete: training networks with discrete variables in PyTorch Lightning."""

__version__ = "0.1.0"
