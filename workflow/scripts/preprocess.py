"""Rule preprocess: one subject, raw FLAIR as acquired -> BIDS derivatives (slimdiff.preprocess)."""

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

config = snakemake.config
cfg = dict(config["preprocess"])  # the params plus runtime keys (the HD-BET device)
if cfg["brain_extraction"]["backend"] == "hd-bet" and cfg["brain_extraction"]["hd_bet"]["device"] == "cuda":
    from slimdiff.gpu_lease import lease_gpu

    lease_gpu()  # before torch touches CUDA: this job sees one leased device

if cfg["brain_extraction"]["backend"] in ("hd-bet", "synthstrip"):
    import torch

    # the network's CPU work stays within the job's declared threads (torch would take every core)
    torch.set_num_threads(max(1, snakemake.threads))

if cfg["n4"]["enabled"]:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, snakemake.threads))

from slimdiff.preprocess.cohort import preprocess_one

preprocess_one(
    snakemake.input.raw,
    snakemake.wildcards.subject,
    snakemake.output.subject,
    cfg,
    # Not a param of this rule: under skip a bad subject's job writes its reason instead of failing, and
    # preprocess_cohort (whose param it is) stops on that reason or leaves the subject out; a subject that
    # went through is the same under either value, so changing it must not rerun every subject.
    config["data"]["ingest"]["on_bad_subject"],
)
