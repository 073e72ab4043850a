"""Plugins are selected from a recipe by name with no edit to bltx: by job.plugins and by the
`bltx.plugins` entry-point group of an installed package."""

import textwrap

import torch

import bltx
from bltx.bytes import decode, encode
from helpers import run_cli

PLUGIN_SOURCE = textwrap.dedent(
    """
    from dataclasses import dataclass
    import torch
    from bltx.patching import Patcher
    from bltx.registry import register

    @register("patcher", "{name}")
    class EveryOther(Patcher):
        @dataclass
        class Config:
            phase: int = 0
        def __init__(self, cfg):
            super().__init__()
            self.phase = cfg.phase
        def compute_starts(self, ids, entropies=None):
            pos = torch.arange(ids.shape[-1])
            return ((pos + self.phase) % 2 == 0).expand_as(ids)
    """
)


def recipe_using(tmp_path, patcher_type: str, plugins: list[str]) -> str:
    path = tmp_path / "r.toml"
    path.write_text(
        f"[job]\nplugins = {plugins!r}\n[model]\ntype = 'blt'\n"
        f"[model.patcher]\ntype = '{patcher_type}'\n"
    )
    return str(path)


def test_plugin_from_job_plugins_outside_bltx(tmp_path):
    plugin_dir = tmp_path / "outside"
    plugin_dir.mkdir()
    (plugin_dir / "my_patchers.py").write_text(PLUGIN_SOURCE.format(name="every_other_a"))
    recipe = recipe_using(tmp_path, "every_other_a", ["my_patchers"])
    proc = run_cli(recipe, "--print-config", env={"PYTHONPATH": f"{plugin_dir}:{bltx.__path__[0]}/.."})
    assert proc.returncode == 0, proc.stderr
    assert 'type = "every_other_a"' in proc.stdout
    # Without the plugin listed, the name is unknown and the error says where plugins go.
    proc = run_cli(recipe_using(tmp_path, "every_other_a", []), "--print-config")
    assert proc.returncode == 2 and "job.plugins" in proc.stderr


def test_plugin_from_entry_point(tmp_path):
    site = tmp_path / "site"
    (site / "ep_plugin").mkdir(parents=True)
    (site / "ep_plugin" / "__init__.py").write_text(PLUGIN_SOURCE.format(name="every_other_ep"))
    dist = site / "ep_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[bltx.plugins]\nep_plugin = ep_plugin\n")
    recipe = recipe_using(tmp_path, "every_other_ep", [])
    proc = run_cli(recipe, "--print-config", env={"PYTHONPATH": f"{site}:{bltx.__path__[0]}/.."})
    assert proc.returncode == 0, proc.stderr
    assert 'type = "every_other_ep"' in proc.stdout


def test_bundled_punctuation_plugin():
    import plugins.punctuation_patcher  # noqa: F401  (registers "punctuation")

    ids = encode("Hello, world!  ok...", bos=True)[None]
    starts = bltx.build("patcher", {"type": "punctuation"})(ids)[0]
    bounds = torch.nonzero(starts).flatten().tolist() + [ids.shape[1]]
    pieces = [decode(ids[0, a:b]) for a, b in zip(bounds, bounds[1:])]
    assert pieces == ["", "Hello,", " ", "world!", " ", " ok.", ".", "."]


def test_bundled_plugin_from_recipe(tmp_path):
    recipe = recipe_using(tmp_path, "punctuation", ["plugins.punctuation_patcher"])
    proc = run_cli(recipe, "--set", "model.patcher.max_patch_length=4", "--print-config")
    assert proc.returncode == 0, proc.stderr
    assert "max_patch_length = 4" in proc.stdout


SECTION_PLUGIN = textwrap.dedent(
    """
    from dataclasses import dataclass
    from bltx.registry import register

    @register("section", "probe")
    @dataclass
    class ProbeConfig:
        layers: int = 2
        note: str = ""
        def __post_init__(self):
            if self.layers < 1:
                raise ValueError(f"probe.layers must be >= 1, got {self.layers}")

    @register("task", "probe")
    def probe(recipe):
        cfg = recipe.section("probe")
        print(f"probing {cfg.layers} layers {cfg.note}")
        return 0
    """
)


def test_a_plugin_task_registers_its_own_recipe_section(tmp_path):
    (tmp_path / "probe_plugin.py").write_text(SECTION_PLUGIN)
    recipe = tmp_path / "r.toml"
    recipe.write_text("[job]\nplugins = ['probe_plugin']\ntask = 'probe'\n[probe]\nlayers = 5\n")
    env = {"PYTHONPATH": f"{tmp_path}:{bltx.__path__[0]}/.."}
    proc = run_cli(str(recipe), "--set", 'probe.note="ok"', env=env)
    assert proc.returncode == 0, proc.stderr
    assert "probing 5 layers ok" in proc.stdout
    # The section is saved with the recipe, and validated like bltx's own.
    shown = run_cli(str(recipe), "--print-config", env=env)
    assert "[probe]" in shown.stdout and "layers = 5" in shown.stdout
    for override, expected in (("probe.layerz=1", "unknown key 'probe.layerz' (did you mean 'layers'?)"),
                               ("probe.layers=0", "probe.layers must be >= 1, got 0")):
        proc = run_cli(str(recipe), "--set", override, env=env)
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
