"""linetwin's simulation core: scenario files, the SimPy line model, KPIs, runner and CLI."""

__version__ = "0.1.0"
