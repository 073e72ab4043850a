"""Schemas of the recipe sections (torchtitan-like): one dataclass per top-level TOML table.

Every key of a recipe must be a field here (or of a registered component's Config, for the
component tables under [model]); anything else is rejected when the recipe is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bltx.checks import at_least, between, check_sampling, positive, registered, require
from bltx.schema import component

# What job.device may name ("cuda:N" also, for any N).
DEVICES = ("auto", "cpu", "cuda")
# generate.max_bytes above this would size the KV caches past any sensible use.
MAX_GENERATE_BYTES = 1 << 20
MAX_SEED = 2**32 - 1


@dataclass
class JobConfig:
    name: str = "bltx"
    # What `python -m bltx.run` does with the recipe: a registered "task" (train, eval, ...).
    task: str = "train"
    dump_dir: str = "runs/bltx"
    seed: int = 0
    # Modules to import before building anything; their @register calls add components.
    plugins: list[str] = field(default_factory=list)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    description: str = ""

    def __post_init__(self):
        index = self.device.partition("cuda:")[2]
        require(self.device in DEVICES or index.isdigit(), "job.device", self.device,
                "must be one of auto, cpu, cuda, cuda:N")
        # numpy's generators (the data order) take seeds in [0, 2**32).
        between("job.seed", self.seed, 0, MAX_SEED)
        # "" would write checkpoints and metrics into whatever folder the run starts in.
        require(bool(self.dump_dir.strip()), "job.dump_dir", self.dump_dir, "must name a folder, e.g. runs/my_run")


@dataclass
class SourceConfig:
    """One document source of a mixture: `data.sources = [{path = "web/*.jsonl", weight = 0.7}, ...]`."""

    # A file, folder, glob or bltx:NAME, or a list of them (read in order as one source).
    path: str | list[str] = ""
    # Share of the training windows drawn from this source (normalised over all sources);
    # 0: validation only.
    weight: float = 1.0
    # The JSON field / column holding the text; "" means data.text_field.
    text_field: str = ""
    # A registered data_source (raw, jsonl, parquet, arrow, ...); "auto": by file type.
    type: str = "auto"
    # Name in logs (val_bpb/NAME); "" -> from the path.
    name: str = ""

    def __post_init__(self):
        require(bool(self.path), "data.sources[].path", self.path, "must name a file, folder or glob")
        at_least("data.sources[].weight", self.weight, 0.0)


@dataclass
class DataConfig:
    # Files or globs, relative to the recipe file or absolute; "bltx:NAME" names a corpus
    # bundled with the package (bltx/data/corpora/NAME). One source of weight 1; ignored
    # when `sources` is set.
    paths: list[str] = field(default_factory=lambda: ["bltx:tiny_shakespeare"])
    # A weighted mixture of sources (see SourceConfig); replaces `paths` when not empty.
    sources: list[SourceConfig] = field(default_factory=list)
    # JSON field / Parquet or Arrow column of the text (per source: sources[].text_field).
    text_field: str = "text"
    seq_len: int = 512
    batch_size: int = 8
    validation_fraction: float = 0.05
    add_bos: bool = True
    # Optional file of per-byte entropies stored beside the data (precomputed patching).
    entropies_path: str = ""
    # Where document indexes of JSONL/Parquet/Arrow files are kept ("" -> ~/.cache/bltx/data).
    cache_dir: str = ""
    # Windows shuffled together: 0 shuffles all of a source's windows; N > 0 shuffles
    # groups of N windows drawn from a few random places (reads stay local: for Parquet
    # and Arrow corpora far larger than RAM).
    shuffle_buffer: int = 0
    # Train batches prepared ahead in a background thread (0: read in the training loop).
    prefetch: int = 2
    # Supervised fine-tuning (bltx/data/sft.py). What one record (JSON line, Parquet/Arrow
    # row) is: "text": its text_field is a document; "prompt_completion": one example, the
    # bytes of prompt_field then those of completion_field; "chat": one example, the list of
    # {role, content} messages in messages_field, each rendered with `template`.
    records: Literal["text", "prompt_completion", "chat"] = "text"
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    messages_field: str = "messages"
    # Chat rendering, role -> bytes around the message, "{content}" marking where its text
    # goes, e.g. {user = "<|user|>\n{content}\n", assistant = "<|assistant|>\n{content}<|end|>\n"};
    # empty: bltx/data/sft.py DEFAULT_TEMPLATE. An assistant message's completion part is
    # its content and what follows it in the template (the end marker), not what precedes.
    template: dict = field(default_factory=dict)
    # Which targets the loss, bpb and validation count: "all" bytes, or only "completion"
    # bytes (the completion field; the assistant messages) and the EOS after them.
    loss_on: Literal["all", "completion"] = "all"
    # Examples (records other than "text") are packed whole into windows, padding the rest
    # of a window; with document_mask every attention (byte windows, cross-attention,
    # latent) and the hash n-grams stay inside one example. Also applies to "text" records
    # (documents end at EOS), which are then still cut into windows anywhere.
    document_mask: bool = False

    def __post_init__(self):
        at_least("data.seq_len", self.seq_len, 2)
        at_least("data.batch_size", self.batch_size, 1)
        between("data.validation_fraction", self.validation_fraction, 0.0, 1.0, high_open=True)
        require(bool(self.text_field), "data.text_field", self.text_field, "must name a field")
        at_least("data.shuffle_buffer", self.shuffle_buffer, 0, " (0: shuffle all windows)")
        at_least("data.prefetch", self.prefetch, 0, " (0: no background reads)")
        require(not self.sources or any(s.weight > 0 for s in self.sources), "data.sources",
                [s.weight for s in self.sources], "at least one source needs a weight > 0")
        for key in ("prompt_field", "completion_field", "messages_field"):
            require(bool(getattr(self, key)), f"data.{key}", getattr(self, key), "must name a field")
        require(self.loss_on == "all" or self.records != "text", "data.loss_on", self.loss_on,
                'needs examples with a completion part: set data.records = "prompt_completion" or "chat"')
        for role, text in self.template.items():
            require(isinstance(text, str) and text.count("{content}") == 1, f"data.template.{role}", text,
                    'must be a string with "{content}" exactly once')


@dataclass
class ParamGroupConfig:
    """One `optimizer.groups` entry: parameters whose names match `match` (globs; the first
    group that matches a parameter takes it) get `lr_scale` x optimizer.lr and their own
    weight decay (None: optimizer.weight_decay; vectors never decay)."""

    match: list[str] = field(default_factory=list)
    lr_scale: float = 1.0
    weight_decay: float | None = None

    def __post_init__(self):
        if isinstance(self.match, str):
            self.match = [self.match]
        require(bool(self.match), "optimizer.groups[].match", self.match, "must name parameters, e.g. [\"latent.*\"]")
        at_least("optimizer.groups[].lr_scale", self.lr_scale, 0.0)
        if self.weight_decay is not None:
            at_least("optimizer.groups[].weight_decay", self.weight_decay, 0.0)


@dataclass
class OptimizerConfig:
    # A registered optimizer (`@register("optimizer", NAME)`: fn(model, cfg, device)); a
    # plugin adds its own. Its hyperparameters are the fields below.
    type: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    fused: bool = True  # used only where the device supports it
    # Per-part learning rates and weight decay by parameter-name globs (ParamGroupConfig).
    groups: list[ParamGroupConfig] = field(default_factory=list)

    def __post_init__(self):
        registered("optimizer", self.type, "optimizer.type")
        positive("optimizer.lr", self.lr)
        at_least("optimizer.weight_decay", self.weight_decay, 0.0)
        require(len(self.betas) == 2, "optimizer.betas", self.betas, "must be two numbers, e.g. [0.9, 0.95]")
        for i, beta in enumerate(self.betas):
            between(f"optimizer.betas[{i}]", beta, 0.0, 1.0, high_open=True)
        positive("optimizer.eps", self.eps)


@dataclass
class LRSchedulerConfig:
    # A registered schedule (`@register("lr_scheduler", NAME)`: fn(cfg, total_steps) ->
    # factor(step)); built-ins: cosine, wsd, constant.
    type: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    # Warmup-stable-decay: fraction of steps spent in the final decay.
    decay_fraction: float = 0.2

    def __post_init__(self):
        registered("lr_scheduler", self.type, "lr_scheduler.type")
        at_least("lr_scheduler.warmup_steps", self.warmup_steps, 0)
        between("lr_scheduler.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0, note=" (a fraction of optimizer.lr)")
        between("lr_scheduler.decay_fraction", self.decay_fraction, 0.0, 1.0, note=" (a fraction of training.steps)")


@dataclass
class TrainingConfig:
    steps: int = 1000
    grad_accum: int = 1
    max_norm: float = 1.0
    # "auto": bfloat16 where the device runs bf16 natively, else float32 (bltx/precision.py).
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # A step whose loss or gradient norm is NaN/inf is never applied. "stop": end the run
    # with one line and a non-zero exit (the newest checkpoint stays the last finite one);
    # "skip": drop that update, count it, and go on.
    on_nonfinite: Literal["stop", "skip"] = "stop"
    # Parameter-name globs kept at their loaded/initial values: no gradient, no optimizer
    # state, no weight decay (e.g. ["latent.*"] trains the local models around a frozen
    # global transformer). An [adapter] freezes everything but its adapters by itself.
    freeze: list[str] = field(default_factory=list)

    def __post_init__(self):
        at_least("training.steps", self.steps, 0)
        at_least("training.grad_accum", self.grad_accum, 1, " (micro-batches per optimizer step)")
        at_least("training.max_norm", self.max_norm, 0.0, " (0: no clipping)")


@dataclass
class ParallelismConfig:
    dp_replicate: int = 1
    dp_shard: int = -1  # -1: whatever the world size leaves
    tp: int = 1
    # Under FSDP (dp_shard > 1, no replicas), embedding tables the model's plan names (BLT's
    # hash n-gram tables) keep their rows sharded and exchange ids instead of being
    # gathered whole for every lookup (bltx/parallel/row_sharded.py).
    row_shard_embeddings: bool = True
    # With tp > 1: shard the activations between tensor-parallel blocks on the sequence
    # (for BLT: patch) axis, torchtitan's sequence parallel.
    sequence_parallel: bool = False

    def __post_init__(self):
        # At load, so a bad degree is named as such, not as a launch that does not fit it.
        at_least("parallelism.tp", self.tp, 1, " (1: no tensor parallel)")
        for name in ("dp_replicate", "dp_shard"):
            value = getattr(self, name)
            require(value >= 1 or value == -1, f"parallelism.{name}", value, "must be >= 1, or -1 to infer it")


@dataclass
class CompileConfig:
    enable: bool = False
    fullgraph: bool = True
    # "model": one graph for the whole forward (no block boundaries for the compiler to
    # stop at; best for small models). "blocks": each block compiled on its own, identical
    # blocks sharing one graph, so compile time stays flat in depth (required under FSDP).
    # "auto": blocks under FSDP or above 100M parameters (the 1B shape took over 110 s to
    # compile whole on an H200 host), else model.
    scope: Literal["auto", "model", "blocks"] = "auto"


@dataclass
class Float8Config:
    enable: bool = False
    recipe: Literal["tensorwise", "rowwise"] = "tensorwise"


@dataclass
class ActivationCheckpointConfig:
    mode: Literal["none", "full", "selective"] = "none"


@dataclass
class CheckpointConfig:
    enable: bool = True
    # Save every `interval` steps and at the end; 0: only at the end (and on SIGTERM/SIGINT).
    interval: int = 500
    keep_latest: int = 2
    load_path: str = ""
    # Resume automatically from the newest checkpoint in the dump folder that passes
    # verification (its manifest); newer ones that fail are reported and skipped.
    auto_resume: bool = True
    # Resuming with other [model] settings than the checkpoint's is refused (the weights
    # would load and mean something else); true allows it, e.g. to fine-tune a threshold.
    allow_model_changes: bool = False

    def __post_init__(self):
        at_least("checkpoint.interval", self.interval, 0, " (0: save only at the end)")
        at_least("checkpoint.keep_latest", self.keep_latest, 1)


@dataclass
class InitConfig:
    """Start a fresh run from weights (bltx/train/init_weights.py): a Hugging Face BLT
    `save_pretrained` folder (its config.json then gives [model]), a bltx run folder or
    trainer checkpoint (model weights only, newest good checkpoint), or a `.pt` state dict.
    The optimizer and schedule start fresh at step 0; a run with checkpoints of its own
    resumes from those instead."""

    path: str = ""
    # Parameter-name globs left at their seeded init (a new decoder, a new patcher).
    ignore: list[str] = field(default_factory=list)


@dataclass
class MetricsConfig:
    log_interval: int = 10
    tensorboard: bool = True
    progress_bar: bool = True

    def __post_init__(self):
        at_least("metrics.log_interval", self.log_interval, 1)


@dataclass
class EvalConfig:
    interval: int = 200
    steps: int = 20
    path: str = ""
    checkpoint: str = ""

    def __post_init__(self):
        at_least("eval.interval", self.interval, 0, " (0: no evaluation during training)")
        at_least("eval.steps", self.steps, 0, " (0: every window)")


@dataclass
class GenerateConfig:
    prompt: str = ""
    max_bytes: int = 256
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    checkpoint: str = ""
    # torch.compile the cached decode steps (CUDA graphs on CUDA). "auto": CUDA only; on the
    # 2-core CPU the steady state is 2.5x faster but compiling takes minutes (README).
    compile: Literal["auto", "on", "off"] = "auto"
    # Speculative decoding: draft up to k bytes with the entropy patcher's model (0 = off).
    speculative_k: int = 0

    def __post_init__(self):
        require(0 <= self.max_bytes <= MAX_GENERATE_BYTES, "generate.max_bytes", self.max_bytes,
                f"must be in [0, {MAX_GENERATE_BYTES}]")
        check_sampling(self.temperature, self.top_k, self.top_p, prefix="generate.")
        require(0 <= self.speculative_k <= 16, "generate.speculative_k", self.speculative_k,
                "must be in [0, 16] (0: off; 16: the spare slots of windowed caches)")


@dataclass
class CalibrateConfig:
    """The `calibrate` task (entropy workflow step 2): pick the entropy threshold that gives
    `target_patch_length` bytes per patch on the validation split, using the entropy model
    of `checkpoint.load_path` (or the newest checkpoint in job.dump_dir)."""

    target_patch_length: float = 4.5
    rule: Literal["global", "monotonic"] = "global"
    max_patch_length: int | None = None
    batches: int = 16  # validation batches the mean patch length is measured on
    # The recipe fragment written (a [model.patcher] table that recipes include).
    output: str = "toml_configs/patcher/calibrated.toml"
    # Where the entropy model's weights are exported for the patcher (a .pt state dict);
    # "" -> <job.dump_dir>/entropy_model.pt. weights_dtype "bfloat16" halves the file.
    weights_out: str = ""
    weights_dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self):
        at_least("calibrate.target_patch_length", self.target_patch_length, 1.0)
        at_least("calibrate.batches", self.batches, 1)
        if self.max_patch_length is not None:
            at_least("calibrate.max_patch_length", self.max_patch_length, 1)


@dataclass
class LMEvalConfig:
    """The `lm_eval` task: lm-evaluation-harness tasks on a trained checkpoint."""

    tasks: list[str] = field(default_factory=list)
    # A folder of local task YAMLs (searched besides lm-eval's own tasks).
    include_path: str = ""
    # Index lm-eval's bundled tasks too (about 15 s); false when only local tasks are used.
    include_defaults: bool = True
    num_fewshot: int | None = None
    # Examples per task: a count, or a fraction of the task when below 1.
    limit: float | None = None
    batch_size: int = 8
    # Longest input in bytes (contexts are cut from the left); 0: data.seq_len.
    max_length: int = 0
    bootstrap_iters: int = 1000
    checkpoint: str = ""

    def __post_init__(self):
        at_least("lm_eval.batch_size", self.batch_size, 1)
        at_least("lm_eval.max_length", self.max_length, 0, " (0: data.seq_len)")
        at_least("lm_eval.bootstrap_iters", self.bootstrap_iters, 0)
        if self.num_fewshot is not None:
            at_least("lm_eval.num_fewshot", self.num_fewshot, 0)
        if self.limit is not None:
            positive("lm_eval.limit", self.limit)


@dataclass
class Recipe:
    """A whole recipe after includes and overrides are merged and every value is checked."""

    job: JobConfig = field(default_factory=JobConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: dict = component("model", {"type": "blt"})
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_scheduler: LRSchedulerConfig = field(default_factory=LRSchedulerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    parallelism: ParallelismConfig = field(default_factory=ParallelismConfig)
    compile: CompileConfig = field(default_factory=CompileConfig)
    float8: Float8Config = field(default_factory=Float8Config)
    activation_checkpoint: ActivationCheckpointConfig = field(
        default_factory=ActivationCheckpointConfig
    )
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    init: InitConfig = field(default_factory=InitConfig)
    # Adapters on Linear layers (bltx/model/adapters.py), e.g. {type = "lora", rank = 8,
    # target = ["latent.*"]}; {} = none. With one, only the adapters train.
    adapter: dict | None = component("adapter", optional=True)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    calibrate: CalibrateConfig = field(default_factory=CalibrateConfig)
    lm_eval: LMEvalConfig = field(default_factory=LMEvalConfig)
    # Absolute path of the recipe file it came from ("" when built in code); relative data
    # and checkpoint paths resolve against its folder. Not a TOML key.
    source: str = field(default="", init=False, repr=False)
    # Sections registered by plugins (kind "section"), parsed by their dataclass: every
    # registered one is here, with its defaults when the recipe has no such table.
    plugin_sections: dict = field(default_factory=dict, init=False, repr=False)

    def section(self, name: str):
        """A plugin-registered section's parsed dataclass (see bltx/registry.py "section")."""
        if name not in self.plugin_sections:
            known = ", ".join(sorted(self.plugin_sections)) or "none"
            raise KeyError(f"no recipe section '{name}' is registered (registered: {known}); "
                           f"register its dataclass with @register(\"section\", \"{name}\")")
        return self.plugin_sections[name]
