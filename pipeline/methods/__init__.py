"""Learned methods: one package each, one line each in :mod:`pipeline.methods.registry`.

=============  ===================================================================================
module         purpose
=============  ===================================================================================
``params``     :class:`TrialParams`: what the Ray Tune runner reads of every method's section
``base``       the :class:`Method` interface, the :class:`Trainer` protocol, trained parts on disk
``registry``   ``METHODS``: name → method class
``dlw``        DLW (Rui et al.): a learned weight map of the fidelity, bilevel training
=============  ===================================================================================

Importing this package, ``params``, ``base`` or ``registry`` imports no torch.
"""
