"""Studies: the η × |B| × seed experiment, its instruments and noise controls, for any ``nn.Module``.

``thermosgd.study(spec, out=None)`` (:func:`thermosgd.studies.run.study`) and
``thermosgd study STUDY.toml --out DIR`` run one; the results folder is a sweep
folder, so ``load``, ``collapse`` and ``report`` read it unchanged.
"""
