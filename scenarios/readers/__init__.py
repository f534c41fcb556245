"""Readers for the standard continual-learning benchmarks, one module per dataset family.

Each reader reads one real on-disk layout under the data root (``--data-root`` /
``$CLBENCH_DATA``) and returns :class:`clbench.data.LabelledData`; it never
decides task splits. ``clbench fetch NAME`` downloads the ones with a public source.
"""
