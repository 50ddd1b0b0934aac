"""Labs: runnable experiments on real data, one module each (config + presets + wiring).

Each module defines ``LAB`` (or ``LABS``), a :class:`deepnotes.experiment.Lab`; the registry
(:mod:`deepnotes.experiment.registry`) finds them by name. The knowledge lives one floor down, in the modules a
lab uses (``models``, ``nn``, ``audio``, ``train``, ``data``, ``metrics``, ``report``); see
``docs/adding-a-lab.md``.
"""
