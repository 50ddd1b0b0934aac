"""deepnotes: a runnable companion to a modern deep-learning curriculum.

Each technique of the course notes is a readable PyTorch module written from its equations,
tested against a trusted reference, and used by a *lab* (``deepnotes run LAB``) that trains and
evaluates on real data and writes a report.
"""

__version__ = "0.1.0"
