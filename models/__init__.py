"""The engine: a checkpoint resolved once, loaded, and answering prepared batches with or without a method.

No lmms-eval here (an import contract says so): the lmms-eval models are ``plugin``'s, and everything that answers
(an evaluation, a sweep, the viewer's live re-run, VEA's profiling, the benchmarks) runs on :class:`models.engine.Engine`
built by :func:`models.loading.load_engine`. A method is one file here (its declaration and runner) over its math in
``interventions/``; the registry is ``models.methods``.
"""
