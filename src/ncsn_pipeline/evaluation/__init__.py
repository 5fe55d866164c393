"""Sample-quality evaluation: the digits judge (`digits_judge`, command line in `cli`) and the ``evaluation.json``
record a model card shows (`records`)."""
