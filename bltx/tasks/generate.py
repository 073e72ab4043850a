"""The `generate` task: load a checkpoint and stream generated text to stdout.

    python -m bltx.run recipes/tiny.toml --set job.task=generate \
        --set generate.prompt="ROMEO:" --set generate.max_bytes=300

The checkpoint is `generate.checkpoint`, else `checkpoint.load_path`, else the newest one in
`job.dump_dir`; the model is built from the recipe (a clear error if it does not fit).
"""

from __future__ import annotations

import codecs
import sys
import time

from bltx.infer.generate import generate
from bltx.infer.sampling import SamplingConfig
from bltx.registry import register
from bltx.sections import Recipe
from bltx.train.trained import checkpoint_for, load_trained_model


@register("task", "generate")
def generate_task(recipe: Recipe) -> int:
    from bltx.device import pick_device

    cfg = recipe.generate
    try:
        sampling = SamplingConfig(temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p)
    except ValueError as exc:
        from bltx.errors import ConfigError

        raise ConfigError(f"generate: {exc}") from None
    device = pick_device(recipe.job.device)
    model = load_trained_model(recipe, checkpoint_for(recipe, cfg.checkpoint, "generate"), device)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = sys.stdout

    def on_byte(row: int, token: int) -> None:
        if 4 <= token < 260:
            out.write(decoder.decode(bytes([token - 4])))
            out.flush()

    out.write(cfg.prompt)
    start = time.perf_counter()
    generated = generate(
        model, [cfg.prompt], cfg.max_bytes, sampling=sampling, stop=cfg.stop,
        seed=recipe.job.seed, on_byte=on_byte, compile=cfg.compile,
        speculative_k=cfg.speculative_k,
    )[0]
    out.write(decoder.decode(b"", final=True) + "\n")
    seconds = time.perf_counter() - start
    print(f"[{len(generated)} bytes in {seconds:.2f}s, {len(generated) / max(seconds, 1e-9):.1f} bytes/s]", file=sys.stderr)
    return 0
