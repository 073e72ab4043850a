"""Imports every module that registers a built-in component.

Add a module here when it defines `@register(...)` components. Plugins never edit this file:
they are imported from `job.plugins` or the `bltx.plugins` entry-point group.
"""

import importlib

BUILTIN_MODULES = (
    "bltx.patching.simple",
)

for _module in BUILTIN_MODULES:
    importlib.import_module(_module)
