# Config loading and validation, and the input/target functions every rule module uses.
import os
import re
from pathlib import Path

from slimdiff.config import ConfigError, resolve_config, show_config_if_asked, validate_config
from slimdiff.experiments import expand_runs, parse_run, pretrained_runs, protocols, run_folds
from slimdiff.gpu_lease import export_settings
from slimdiff.metrics.pairing import has_paired_folds, variant_pairs
from slimdiff.names import (
    AGGREGATE_DIR,
    FIGURES_DIR,
    METRICS_DIR,
    PAPER_DIR,
    SAMPLES_DIR,
    TRAIN_DIR,
    UTILITY_DIR,
    UTILITY_REAL_DIR,
    AggregatedFiles,
)
from slimdiff.preprocess.cohort import check_config as check_preprocess_config
from slimdiff.preprocess.cohort import subject_ids as preprocess_subject_ids
from slimdiff.preprocess.subject import stage_enabled
from slimdiff.data.synth import participant_ids as synthetic_ids
from slimdiff.rerun import rule_settings
from slimdiff.snakemake_scheduler import install as one_scheduler_timer

# Snakemake's scheduler wakes once a second per job finished while others wait; one pending wake-up does the same
# work without a core's worth of rounds on a long run (slimdiff/snakemake_scheduler.py says why).
one_scheduler_timer()

# The config that runs: the files named by --configfile (else config/config.yaml), each with the chain it
# `extends`, then --config KEY=VALUE (slimdiff.config says how they combine). Validated by the same code as the
# slimdiff-* commands (config/schema.yaml, defaults filled in, every problem listed with its key path);
# snakemake.utils.validate cannot fill defaults inside a list of experiment grids.
CONFIG_FILES = [os.path.relpath(f) for f in workflow.overwrite_configfiles] or ["config/config.yaml"]
try:
    _resolved = resolve_config(CONFIG_FILES, overrides=workflow.config_settings.config)
    _source = " + ".join(CONFIG_FILES) + (" + --config" if workflow.config_settings.config else "")
    _resolved = validate_config(_resolved, source=f"the config ({_source})")
    config.clear()
    config.update(_resolved)
    RUNS = expand_runs(config)  # run name -> full run config (model, diffusion, loss, ...)
    PRETRAINED = pretrained_runs(config)  # run name -> its grid's `pretrained` block: imported, not trained
    PROTOCOLS = protocols(config)  # protocol name ("" = the config's own sections) -> split, generation, scoring
except ConfigError as err:
    raise WorkflowError(str(err)) from None
show_config_if_asked(config, source=_source)  # SLIMDIFF_SHOW_CONFIG=- snakemake -n ...: what will run

DATA = config["data"]
SYNTHETIC = DATA["source"] == "synthetic"
RAW_DIR = DATA["raw_dir"]
CACHE_DIR = "results/cache"
CACHE_FILES = ["images.npy", "masks.npy", "index.csv", "splits.json", "rejected.csv", "cohort.csv", "cache_meta.json"]
QC_FILES = ["zbin_montage.png", "cohort_stats.png", "cohort_stats.csv", "cohort.png", "cohort.csv", "cohort_counts.csv"]
RUN_FOLDS = run_folds(RUNS)  # (run, fold) pairs: each grid may train its runs on its own folds
TRAINED_RUN_FOLDS = [(run, fold) for run, fold in RUN_FOLDS if run not in PRETRAINED]  # those with a log.csv
RUN_PROTOCOL = {run: parse_run(run)["protocol"] for run in RUNS}  # run -> the protocol it was asked for in
# Protocols with a split of their own: rule split_view writes each as a view of the cache (rules/splits.smk).
VIEW_PROTOCOLS = sorted({p for p in RUN_PROTOCOL.values() if PROTOCOLS[p]["split"] is not None})
SPLIT_DIR = "results/splits/{protocol}"
SPLIT_FILES = ["index.csv", "splits.json", "cache_meta.json"]  # with links to the cache's arrays
export_settings(config["gpu"])  # GPU jobs of this machine lease devices from this list (env, inherited)
GEN = config["generation"]
ZBINS = [f"{b:02d}" for b in range(DATA["cache"]["z_bins"])]
# Inception features are cached by content: the cache never changes a result, so it is no rule's param.
FEATURE_CACHE = "results/metrics/features"


wildcard_constraints:
    run="|".join(map(re.escape, RUNS)),
    protocol="|".join(map(re.escape, VIEW_PROTOCOLS)) or "(?!)",
    fold=r"\d+",
    replica=r"\d+",
    zbin=r"\d\d",

if not SYNTHETIC and not Path(RAW_DIR).is_dir():
    raise WorkflowError(
        f"data.raw_dir {RAW_DIR!r} does not exist (data.source is 'raw'); point it at your ds004199 copy"
    )

# The preprocessing stage (raw FLAIR -> skull-stripped, normalised BIDS derivatives): one job per subject, so
# the subjects are listed here: the synthetic cohort's names follow from its size, a raw cohort's are read.
PREPROCESS = config["preprocess"]
PREPROCESS_ON = stage_enabled(PREPROCESS)
PREPROCESSED_DIR = "results/preprocessed"
HDBET_GPU = PREPROCESS_ON and PREPROCESS["brain_extraction"]["backend"] == "hd-bet" and (
    PREPROCESS["brain_extraction"]["hd_bet"]["device"] == "cuda"
)
PREPROCESS_SUBJECTS = []
try:
    check_preprocess_config(PREPROCESS, DATA)  # with the stage off too: an as-acquired cohort needs it
except ConfigError as err:
    raise WorkflowError(str(err)) from None
if PREPROCESS_ON:
    PREPROCESS_SUBJECTS = synthetic_ids(**DATA["synthetic"]) if SYNTHETIC else preprocess_subject_ids(RAW_DIR)


wildcard_constraints:
    subject=r"sub-[A-Za-z0-9]+",


def gpu_resources(job):
    """Resources of a GPU-tagged rule: one GPU, plus what config `cluster` says a scheduler should grant."""
    ask = config["cluster"][job]
    res = {"gpu": 1, "runtime": ask["runtime"], "mem_mb": ask["mem_mb"], "cpus_per_gpu": ask["cpus_per_gpu"]}
    if ask["gpu_model"]:
        res["gpu_model"] = ask["gpu_model"]
    return res


def raw_input():
    """The raw cohort: produced by synth_cohort for the embedded default, else the user's directory."""
    return rules.synth_cohort.output.cohort if SYNTHETIC else RAW_DIR


def preprocessed_input():
    """build_cache's extra input when the preprocessing stage runs: the derivatives' participants.tsv (its folder
    is then the cohort the cache reads)."""
    return {"preprocessed": f"{PREPROCESSED_DIR}/participants.tsv"} if PREPROCESS_ON else {}


def cache_outputs():
    return {Path(f).stem.replace(".", "_"): f"{CACHE_DIR}/{f}" for f in CACHE_FILES}


def split_inputs(wildcards):
    """The cache a run's jobs read: the cache itself, or its protocol's split view (same arrays and test set,
    the protocol's folds). Keyed like cache_outputs(), so a script finds it at Path(input.cache_meta).parent."""
    files = cache_outputs()
    protocol = RUN_PROTOCOL[wildcards.run]
    if PROTOCOLS[protocol]["split"] is not None:
        for name in SPLIT_FILES:
            files[Path(name).stem.replace(".", "_")] = f"{SPLIT_DIR.format(protocol=protocol)}/{name}"
    return files


def run_replicas(run):
    """The replica ids of a run: its protocol's generation.replicas."""
    return list(range(PROTOCOLS[RUN_PROTOCOL[run]]["generation"]["replicas"]))


def run_generation(wildcards):
    """What a run's samples depend on in its protocol's generation settings (rule generate's parameter)."""
    return rule_settings("generate", "generation", PROTOCOLS[RUN_PROTOCOL[wildcards.run]]["generation"])


def run_scoring(wildcards):
    """The run's scoring regime (per_replica or merged) and camera-ready per-z-bin KID, from its protocol."""
    return PROTOCOLS[RUN_PROTOCOL[wildcards.run]]["scoring"]


# Params are the rerun contract: each rule gets exactly the config values its outputs depend on, as the
# schema's `x-rules` marks them (slimdiff.rerun). Runtime values (threads, batch sizes, channels_last, ...)
# reach the job scripts through the config and rerun nothing; folds and replicas only add jobs.
def settings(rule, section):
    """The part of a config section that `rule`'s outputs depend on (its params)."""
    return rule_settings(rule, section, config[section])


def run_config(wildcards):
    """What a run learns from, as the train rule's parameter: any change to it retrains exactly that run.

    Not in it: the fold list (adding folds must not retrain the folds already done), the sampler (it changes
    the samples, not the model; rule generate has it) and runtime settings such as threads.
    """
    run = RUNS[wildcards.run]
    return {s: v for s in run if (v := rule_settings("train", s, run[s]))}


def run_sampler(wildcards):
    """The run's sampler settings, the generate rule's parameter."""
    return rule_settings("generate", "sampler", RUNS[wildcards.run]["sampler"])


def either_of(names):
    """A wildcard pattern matching exactly these run names (none: a pattern that matches nothing)."""
    return "|".join(map(re.escape, names)) or "(?!)"


def pretrained_file(wildcards):
    return PRETRAINED[wildcards.run]["file"]


def pretrained_claims(wildcards):
    """What the grid says the imported model is; the import refuses a model that is something else."""
    run = RUNS[wildcards.run]
    return {s: rule_settings("train", s, run[s]) for s in ("model", "diffusion", "loss", "self_conditioning")}


def per_run_files(pattern, run_folds=None, **wildcards):
    """One file per (run, fold) pair (default: all of them), e.g. per_run_files(f"{METRICS_DIR}/per_zbin.csv")."""
    pairs = RUN_FOLDS if run_folds is None else run_folds
    if not pairs:
        return []
    runs, folds = zip(*pairs)
    per_pair = expand(pattern, zip, run=runs, fold=folds, allow_missing=True)
    return [path for pair in per_pair for path in expand(pair, **wildcards)]


def trained_models():
    return per_run_files(f"{TRAIN_DIR}/model.pt")


def zbin_samples(wildcards):
    """Every z-bin file of one run, fold and replica (static fan-out over the configured bins)."""
    return expand(f"{SAMPLES_DIR}/zbin{{zbin}}.npz", zbin=ZBINS, **wildcards)


# generation.job_unit: replica makes one generate job sample every z-bin of a replica. The files are the same
# per-z-bin files with the same samples (each sample has its own seed); only the number of processes changes.
# On a CPU a job's start-up (Python, torch, the model: several seconds) outweighs sampling one small z-bin.
PER_ZBIN_JOBS = GEN["job_unit"] == "zbin"
GENERATE_JOB = "{run}_fold{fold}_replica{replica}" + ("_zbin{zbin}" if PER_ZBIN_JOBS else "")


def generate_outputs(ext):
    """The per-z-bin files of one generate job: one z-bin, or every z-bin of the replica."""
    if PER_ZBIN_JOBS:
        return f"{SAMPLES_DIR}/zbin{{zbin}}.{ext}"
    return expand(f"{SAMPLES_DIR}/zbin{{zbin}}.{ext}", zbin=ZBINS, allow_missing=True)


def run_samples(wildcards):
    """All z-bin files of all replicas of one run and fold: the synthetic set the metrics score."""
    return expand(
        f"{SAMPLES_DIR}/zbin{{zbin}}.npz",
        run=wildcards.run,
        fold=wildcards.fold,
        replica=run_replicas(wildcards.run),
        zbin=ZBINS,
    )


def run_metrics():
    return per_run_files(f"{METRICS_DIR}/metrics.json")


def utility_files():
    """The utility stage's results: one per run and fold, and the real-only arm of every fold those use (none
    when utility.enabled is off)."""
    if not config["utility"]["enabled"]:
        return {"utility": [], "utility_real": []}
    folds = sorted({fold for _, fold in RUN_FOLDS})
    return {
        "utility": per_run_files(f"{UTILITY_DIR}/utility.json"),
        "utility_real": expand(f"{UTILITY_REAL_DIR}/utility.json", fold=folds),
    }


# What rule aggregate_metrics writes under results/metrics, by output key (the figures and the table read only
# these): slimdiff.names.AggregatedFiles, which slimdiff-figures reads too.
AGGREGATED = AggregatedFiles.in_dir(AGGREGATE_DIR).as_dict()
FIGURES = [
    "similarity_metrics",
    "per_zbin",
    "morphology",
    "lesion_features",
    "tau_sensitivity",
    "training_curves",
    "utility",
]
# Regime B's figure exists when a shared run and a twin of another variant share at least two folds: the
# same condition under which aggregate_metrics writes `regime_b` into summary.json.
if has_paired_folds(variant_pairs(RUN_FOLDS)):
    FIGURES.append("coupling_by_fold")


def sample_grids():
    return [
        path
        for run, fold in RUN_FOLDS
        for path in expand(f"{SAMPLES_DIR}/grid.png", run=run, fold=fold, replica=run_replicas(run))
    ]


def zbin_panel_rows():
    """Per z-bin, one (label, samples file) row per run: its first fold, replica 0."""
    first_fold = {run: cfg["training"]["folds"][0] for run, cfg in RUNS.items()}
    path = f"{SAMPLES_DIR}/zbin{{zbin}}.npz"
    return {
        z: [(f"{run} f{fold}", path.format(run=run, fold=fold, replica=0, zbin=z)) for run, fold in first_fold.items()]
        for z in ZBINS
    }


def computed_targets():
    """Everything up to the metrics: the `compute` target, and the DVC stage of the same name."""
    return (
        [f"{CACHE_DIR}/qc/{f}" for f in QC_FILES]
        + trained_models()
        + sample_grids()
        + expand("results/samples/zbin{zbin}.png", zbin=ZBINS)
        + list(AGGREGATED.values())
    )


def final_targets():
    return (
        computed_targets()
        + [f"{PAPER_DIR}/table.md"]
        + expand(f"{FIGURES_DIR}/{{stem}}.{{ext}}", stem=FIGURES, ext=["png", "pdf"])
    )


# A protocol's split as a view of the cache (one rule; it needs the input functions above).
include: "splits.smk"
