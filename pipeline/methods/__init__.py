"""Learned methods: one package each, one line each in :mod:`pipeline.methods.registry`.

=============  ===================================================================================
module         purpose
=============  ===================================================================================
``params``     :class:`TrialParams`: what the Ray Tune runner reads of every method's section
``base``       the :class:`Method` interface, the :class:`Trainer` protocol, trained parts on disk
``registry``   ``METHODS``: name → method class
``precision``  ``fp32 | bf16 | auto`` for every method's nets: the :class:`Precision` mixin
``metrics``    torch-side validation scores of the trainers (per-sample PSNR)
``dlw``        DLW (Rui et al.): a learned weight map of the fidelity, bilevel training
``guidance``   proxy-based hyper-guidance (Gao et al.): a σ̂ net and an unrolled HQS net
``rg``         regularising gradients (Willingham et al.): a learned ∇R in gradient descent
``alr``        adversarial local regulariser (Prost et al.): a WGAN-GP patch critic
=============  ===================================================================================

Importing this package, ``params``, ``base`` or ``registry`` imports no torch.
"""
