"""The training loop and what it needs: configs, optimizers (SAM), schedules, DDP, seeding, logging, runs.

Modules: ``config`` (typed TrainConfig), ``loop`` (``train(cfg, run_dir)``), ``sam``, ``optim``, ``schedules``,
``distributed``, ``seeding`` (EpochSampler, RNG state), ``data`` (datasets from a prepared store),
``validation`` (video AUC on the validation split), ``runlog`` (JSONL + TensorBoard), ``run_dir``.
Imported explicitly by their users, so ``import unmask.train`` stays light.
"""
