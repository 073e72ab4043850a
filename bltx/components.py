"""Imports every module that registers a built-in component.

Add a module here when it defines `@register(...)` components. Plugins never edit this file:
they are imported from `job.plugins` or the `bltx.plugins` entry-point group.
"""

import importlib

BUILTIN_MODULES = (
    "bltx.patching.simple",
    "bltx.model.attention",
    "bltx.model.embedder",
    "bltx.model.local_encoder",
    "bltx.model.latent",
    "bltx.model.local_decoder",
    "bltx.model.entropy_model",
    "bltx.patching.entropy",
    "bltx.model.blt",
    "bltx.model.entropy_lm",
    "bltx.train.optim",
    "bltx.train.schedule",
    "bltx.train.task",
    "bltx.train.entropy_tasks",
    "bltx.eval.task",
    "bltx.infer.task",
    "bltx.model.recurrent_latent",
    "bltx.model.baselines",
    "bltx.interop.llama",
    "bltx.patching.bpe",
    "bltx.eval.research_tasks",
)

for _module in BUILTIN_MODULES:
    importlib.import_module(_module)
