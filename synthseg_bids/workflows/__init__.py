"""Nipype workflows (niworkflows/sMRIPrep style): ``init_*_wf(*, ..., name=...)`` factories.

- :func:`~.segmentation.init_segmentation_wf`: one scan -> label map, volumes, QC, figure
  (embeddable: connect a file to ``inputnode.in_file``);
- :func:`~.outputs.init_derivatives_wf`: store one scan's results as BIDS derivatives;
- :func:`~.base.init_participant_wf` / :func:`~.base.init_single_subject_wf`: the BIDS-App
  (every scan's segmentation and derivatives, then the subject's report); :func:`~.base.init_reports_wf`:
  reports of subjects whose workflow failed;
- :func:`~.group.init_group_wf`: group tables, evaluation and method comparison, and the group report;
- :func:`~.training.init_training_wf`: generate -> train -> validate checkpoints;
- :func:`~.evaluation.init_evaluation_wf`: predictions vs references -> metrics -> statistics.

Each workflow that segments carries its methods text (``__desc__``, and ``__postdesc__`` for the participant
workflow, as niworkflows' ``LiterateWorkflow``), gathered into ``logs/CITATION.md`` by
:func:`synthseg_bids.reports.methods.workflow_description`.

Run configuration: :class:`~.config.AppConfig` (one explicit object, no global state).
"""
