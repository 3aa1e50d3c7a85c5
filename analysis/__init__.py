"""Reads lmms-eval sample logs and the attention log; statistics, tables, heatmaps and layer plots.

``python -m analysis report RUN [RUN ...] --out DIR`` and ``python -m analysis heatmap RUN --doc ID``.
Nothing here loads a model: everything comes from files the evaluations wrote.
"""
