"""Sample-quality evaluation: the digits judge (`digits_judge`), the digits evaluation (`digits_evaluation`, behind
``ncsn-digits-eval``) and ``ncsn-eval``'s measurements (`evaluate`); their command lines are in `ncsn_pipeline.cli`,
the ``evaluation.json`` record a model card shows in `ncsn_pipeline.folder_records`."""
