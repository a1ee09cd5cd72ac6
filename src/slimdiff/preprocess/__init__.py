"""Raw FLAIR as acquired -> the paper's inputs (skull-stripped, intensity-normalised), one subject at a time.

The paper's volumes were skull-stripped and "KDE-normalised" before caching (spec method.md: upstream README
"Skull-stripped, KDE-normalized"); ds004199's FLAIRs are heads as acquired. Each module does one step:

* :mod:`.orient` reorients to the closest canonical (RAS) voxel order, losslessly;
* :mod:`.brain` extracts the brain (backends ``none``, ``mask-file``, ``hd-bet``, ``synthstrip``; :mod:`.hdbet`
  wraps HD-BET, :mod:`.synthstrip` SynthStrip);
* :mod:`.bias` corrects the bias field with SimpleITK's N4 inside the brain mask;
* :mod:`.kde` scales intensities so the KDE white-matter peak lands at a set value;
* :mod:`.subject` chains them for one subject and writes BIDS derivatives atomically;
* :mod:`.cohort` gathers the subjects: participants.tsv, plausibility checks, QC table and figures.
"""
