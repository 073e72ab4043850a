"""Plugins that live outside the bltx core. Each module registers components on import;
select them from a recipe with `job.plugins = ["plugins.NAME"]`."""
